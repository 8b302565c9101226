"""Value iteration: v_{k+1}(s) = max_a [R(s,a) + gamma sum_s' P(s'|s,a) v_k(s')].

Bellman (1957), "Dynamic Programming"; Zhao 2025, "Mathematical Foundations of Reinforcement Learning",
section 4.1 (the contraction: section 3.3); Sutton & Barto 2018, section 4.4. The map is a
gamma-contraction in the sup norm, so the iterates converge to the unique v* from any start.
"""

from __future__ import annotations

import numpy as np

from bellman.mdp import TabularMDP
from bellman.planning.evaluation import check_iteration, greedy_policy
from bellman.planning.result import PlanningResult


def value_iteration(
    mdp: TabularMDP,
    tol: float = 1e-10,
    max_iterations: int = 100_000,
    v0: np.ndarray | None = None,
    keep_history: bool = True,
) -> PlanningResult:
    """Iterate the Bellman optimality operator until the sup-norm change is below `tol`.

    Returns v, q = R + gamma P v, the greedy policy (ties to the lowest action), the number of
    iterations, the residual ||v_{k+1} - v_k||_inf of each and, with keep_history, every v_k.
    """
    v = check_iteration(mdp, tol, max_iterations, v0)
    history, residuals = ([v.copy()] if keep_history else []), []
    # the model in action-major order (row a*S + s holds P(.|s,a)): each sweep computes q_k as an (A, S)
    # array, whose max over actions runs along contiguous rows; the numbers are those of mdp.q_from_v
    S, A = mdp.n_states, mdp.n_actions
    if mdp.is_sparse:
        P = mdp.P[(np.arange(A)[:, None] + A * np.arange(S)[None, :]).ravel()]
    else:
        P = mdp.P.transpose(1, 0, 2).reshape(A * S, S)
    r = mdp.R.T.ravel()
    for k in range(1, int(max_iterations) + 1):
        q = P @ v
        q *= mdp.gamma
        q += r
        v_next = q.reshape(A, S).max(axis=0)
        residuals.append(float(np.max(np.abs(v_next - v))))
        v = v_next
        if keep_history:
            history.append(v.copy())
        if residuals[-1] < tol:
            q = mdp.q_from_v(v)
            return PlanningResult(v, q, greedy_policy(q), k, history, residuals)
    raise RuntimeError(f"value iteration did not reach tol={tol} in {max_iterations} iterations")
