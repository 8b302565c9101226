"""Policy evaluation: solving the Bellman equation v_pi = r_pi + gamma P_pi v_pi.

Zhao 2025, "Mathematical Foundations of Reinforcement Learning", sections 2.6-2.8 (Sutton & Barto 2018,
section 4.1): closed form
v_pi = (I - gamma P_pi)^{-1} r_pi (solved, never inverted) and the iteration v_{k+1} = r_pi + gamma P_pi v_k.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from bellman.mdp import TabularMDP

TIE_TOL = 1e-9


def check_iteration(mdp: TabularMDP, tol: float, max_iterations: int, v0: np.ndarray | None) -> np.ndarray:
    """Validate the stopping rule of an iterative method and return its starting values (a copy of v0,
    zeros by default)."""
    if not tol > 0:
        raise ValueError(f"tol must be a positive number, got {tol}")
    if int(max_iterations) != max_iterations or max_iterations < 1:
        raise ValueError(f"max_iterations must be a positive integer, got {max_iterations}")
    v = np.zeros(mdp.n_states) if v0 is None else np.asarray(v0, dtype=np.float64).copy()
    if v.shape != (mdp.n_states,):
        raise ValueError(f"v0 must have shape ({mdp.n_states},), got {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"v0 must be finite; it has NaN or inf at states {np.flatnonzero(~np.isfinite(v))[:5].tolist()}")
    return v


def evaluate_policy(
    mdp: TabularMDP,
    policy: np.ndarray,
    method: str = "closed_form",
    tol: float = 1e-10,
    max_iterations: int = 100_000,
    v0: np.ndarray | None = None,
) -> np.ndarray:
    """State values v_pi of `policy` ((S, A) probabilities or (S,) action indices).

    method="closed_form" solves (I - gamma P_pi) v = r_pi (sparse LU for a sparse model);
    method="iterative" repeats v <- r_pi + gamma P_pi v from v0 (default 0) until the sup-norm change
    is below tol.
    """
    pi = mdp.check_policy(policy)
    r_pi, P_pi = mdp.r_pi(pi), mdp.P_pi(pi)
    if method == "closed_form":
        return _solve(mdp, r_pi, P_pi)
    if method == "iterative":
        v = check_iteration(mdp, tol, max_iterations, v0)
        for _ in range(int(max_iterations)):
            v_next = r_pi + mdp.gamma * (P_pi @ v)
            if np.max(np.abs(v_next - v)) < tol:
                return v_next
            v = v_next
        raise RuntimeError(
            f"iterative policy evaluation did not reach tol={tol} in {max_iterations} iterations"
        )
    raise ValueError(f"method must be 'closed_form' or 'iterative', got {method!r}")


def _solve(mdp: TabularMDP, r_pi: np.ndarray, P_pi) -> np.ndarray:
    S = mdp.n_states
    singular = (
        f"I - gamma P_pi is singular (gamma = {mdp.gamma}: some states never terminate under this "
        "policy); use method='iterative'"
    )
    if sp.issparse(P_pi):
        A = (sp.identity(S, format="csc") - mdp.gamma * P_pi).tocsc()
        with warnings.catch_warnings():
            warnings.simplefilter("error", spla.MatrixRankWarning)
            try:
                v = spla.spsolve(A, r_pi)
            except (spla.MatrixRankWarning, RuntimeError):
                raise ValueError(singular) from None
    else:
        try:
            v = np.linalg.solve(np.eye(S) - mdp.gamma * P_pi, r_pi)
        except np.linalg.LinAlgError:
            raise ValueError(singular) from None
    if not np.all(np.isfinite(v)):
        raise ValueError(singular)
    return v


def action_values(mdp: TabularMDP, v: np.ndarray) -> np.ndarray:
    """q(s,a) = R(s,a) + gamma sum_s' P(s'|s,a) v(s'), shape (S, A)."""
    v = np.asarray(v, dtype=np.float64)
    if v.shape != (mdp.n_states,):
        raise ValueError(f"v must have shape ({mdp.n_states},), got {v.shape}")
    return mdp.q_from_v(v)


def greedy_policy(q: np.ndarray, atol: float = TIE_TOL) -> np.ndarray:
    """The deterministic greedy policy of q as (S, A) probabilities.

    Actions whose value is within `atol` (relative to the scale of the best value) of the best are
    ties, broken by the lowest action index, so round-off never changes the answer.
    """
    best = q.max(axis=1, keepdims=True)
    ties = q >= best - atol * (1.0 + np.abs(best))
    pi = np.zeros_like(q)
    pi[np.arange(q.shape[0]), ties.argmax(axis=1)] = 1.0
    return pi
