"""Policy iteration and truncated policy iteration.

Howard (1960), "Dynamic Programming and Markov Processes"; truncated (modified) policy iteration: Puterman &
Shin (1978), Management Science 24(11); Zhao 2025, "Mathematical Foundations of Reinforcement Learning",
sections 4.2-4.3; Sutton & Barto 2018, section 4.3.
Each iteration evaluates pi_k (exactly, or with j sweeps of v <- r_pi + gamma P_pi v started from the
previous values) and improves greedily: pi_{k+1}(s) = argmax_a q_k(s,a). j = 1 is value iteration and
j = inf is policy iteration, which stops when the policy no longer changes.
"""

from __future__ import annotations

import math

import numpy as np

from bellman.mdp import TabularMDP
from bellman.planning.evaluation import check_iteration, evaluate_policy, greedy_policy
from bellman.planning.result import PlanningResult


def policy_iteration(
    mdp: TabularMDP,
    policy0: np.ndarray | None = None,
    evaluation: str = "closed_form",
    tol: float = 1e-10,
    max_iterations: int = 10_000,
    keep_history: bool = True,
) -> PlanningResult:
    """Exact evaluation (closed form, or iterative to `tol`) then greedy improvement, until pi is stable.

    policy0 defaults to the greedy policy of the immediate rewards (greedy w.r.t. v = 0).
    """
    return truncated_policy_iteration(
        mdp, sweeps=math.inf, policy0=policy0, evaluation=evaluation, tol=tol,
        max_iterations=max_iterations, keep_history=keep_history,
    )


def truncated_policy_iteration(
    mdp: TabularMDP,
    sweeps: float = 5,
    policy0: np.ndarray | None = None,
    v0: np.ndarray | None = None,
    evaluation: str = "closed_form",
    tol: float = 1e-10,
    max_iterations: int = 100_000,
    keep_history: bool = True,
) -> PlanningResult:
    """Evaluate pi_k with `sweeps` iterative sweeps from v_{k-1}, then improve greedily.

    Stops when the sup-norm change of v between iterations is below tol (sweeps = inf: when the policy
    is stable). `evaluation` is used only for sweeps = inf.
    """
    exact = math.isinf(sweeps)
    if not exact and (int(sweeps) != sweeps or sweeps < 1):
        raise ValueError(f"sweeps must be a positive integer or math.inf, got {sweeps}")
    v = check_iteration(mdp, tol, max_iterations, v0)
    pi = greedy_policy(mdp.q_from_v(v)) if policy0 is None else mdp.check_policy(policy0)
    history, residuals = ([v.copy()] if keep_history else []), []
    for k in range(1, int(max_iterations) + 1):
        # policy evaluation
        if exact:
            v_next = evaluate_policy(mdp, pi, method=evaluation, tol=tol)
        else:
            r_pi, P_pi = mdp.r_pi(pi), mdp.P_pi(pi)
            v_next = v
            for _ in range(int(sweeps)):
                v_next = r_pi + mdp.gamma * (P_pi @ v_next)
        residuals.append(float(np.max(np.abs(v_next - v))))
        v = v_next
        if keep_history:
            history.append(v.copy())
        # policy improvement
        q = mdp.q_from_v(v)
        pi_next = greedy_policy(q)
        converged = np.array_equal(pi_next, pi) if exact else residuals[-1] < tol
        pi = pi_next
        if converged:
            return PlanningResult(v, q, pi, k, history, residuals)
    raise RuntimeError(f"policy iteration did not converge in {max_iterations} iterations")
