"""Finite Markov decision processes with a known model.

A `TabularMDP` holds the transition probabilities P(s'|s,a), the expected rewards R(s,a) and the
discount gamma (Sutton & Barto 2018, section 3.1; Zhao 2025, "Mathematical Foundations of Reinforcement
Learning", section 1.7). P is stored either dense, shape (S, A, S'), or as a sparse CSR matrix of shape
`(S*A, S')` whose row `s*A + a` is the distribution over next states; the sparse form lets a million-state
grid world fit in memory. Every model-based routine goes through the few methods
below (`expected_next`, `q_from_v`, `P_pi`, `r_pi`) so it works the same on both storages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

ROW_SUM_TOL = 1e-8


def _check_finite(name: str, x: np.ndarray) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} must be finite, but {name}{list(idx)} = {x[idx]}")


def check_policy(policy: Any, n_states: int, n_actions: int, name: str = "policy") -> np.ndarray:
    """Validate a policy and return it as an (S, A) array of probabilities.

    Accepts an (S, A) array whose rows are distributions or an (S,) array of action indices.
    """
    pi = np.asarray(policy)
    if pi.ndim == 1 and np.issubdtype(pi.dtype, np.integer):
        if pi.shape != (n_states,) or pi.min() < 0 or pi.max() >= n_actions:
            raise ValueError(
                f"{name} as action indices must have shape ({n_states},) with entries in 0..{n_actions - 1}"
            )
        return np.eye(n_actions)[pi]
    if not np.issubdtype(pi.dtype, np.number) or pi.shape != (n_states, n_actions):
        raise ValueError(
            f"{name} must be an (S, A) = ({n_states}, {n_actions}) array of probabilities, "
            f"got dtype {pi.dtype} and shape {pi.shape}"
        )
    pi = pi.astype(np.float64)
    if not np.all(np.isfinite(pi)) or pi.min() < 0:
        s, a = (int(i) for i in np.argwhere(~(pi >= 0))[0])
        raise ValueError(f"{name}[{s}, {a}] = {pi[s, a]} is not a probability in [0, 1]")
    sums = pi.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > ROW_SUM_TOL)
    if bad.size:
        raise ValueError(
            f"{name} row for state {int(bad[0])} sums to {sums[bad[0]]:.10g}; "
            "each row must be a distribution over actions (sum 1)"
        )
    return pi


@dataclass(frozen=True, eq=False)
class TabularMDP:
    """An MDP with S states, A actions, model P(s'|s,a), expected rewards R(s,a) and discount gamma.

    Args:
        P: transition probabilities, a dense array (S, A, S') or a scipy sparse matrix `(S*A, S')`
            whose row s*A + a holds P(.|s,a).
        R: expected immediate reward, shape (S, A).
        gamma: discount factor in [0, 1); gamma = 1 only with `episodic=True`.
        episodic: allow gamma = 1 for problems where every policy of interest terminates.
    """

    P: Any
    R: np.ndarray
    gamma: float
    episodic: bool = False

    def __post_init__(self) -> None:
        R = np.asarray(self.R, dtype=np.float64)
        if R.ndim != 2:
            raise ValueError(f"R must have shape (S, A), got shape {R.shape}")
        S, A = R.shape
        if S == 0 or A == 0:
            raise ValueError(f"an MDP needs at least one state and one action, got R of shape {R.shape}")
        _check_finite("R", R)
        if sp.issparse(self.P):
            P = sp.csr_matrix(self.P, dtype=np.float64)
            if P.shape != (S * A, S):
                raise ValueError(
                    f"sparse P must have shape (S*A, S) = ({S * A}, {S}) to match R of shape {R.shape}, "
                    f"got {P.shape}"
                )
            P.sum_duplicates()
            _check_finite("P", P.data)
            self._check_probabilities(P.data.min(initial=0.0), P.data.max(initial=0.0), P, S, A)
            sums = np.asarray(P.sum(axis=1)).ravel()
        else:
            P = np.asarray(self.P, dtype=np.float64)
            if P.shape != (S, A, S):
                raise ValueError(
                    f"P must have shape (S, A, S) = ({S}, {A}, {S}) to match R of shape {R.shape}, "
                    f"got {P.shape}"
                )
            _check_finite("P", P)
            self._check_probabilities(P.min(), P.max(), P, S, A)
            sums = P.sum(axis=2).ravel()
        bad = np.flatnonzero(np.abs(sums - 1.0) > ROW_SUM_TOL)
        if bad.size:
            s, a = divmod(int(bad[0]), A)
            raise ValueError(
                f"P(.|s={s}, a={a}) sums to {sums[bad[0]]:.10g}; every row of P must sum to 1 "
                f"(tolerance {ROW_SUM_TOL}); {bad.size} row(s) do not"
            )
        gamma = float(self.gamma)
        if not np.isfinite(gamma) or gamma < 0 or gamma > 1 or (gamma == 1 and not self.episodic):
            raise ValueError(
                f"gamma must be in [0, 1) (gamma = 1 only with episodic=True), got {self.gamma}"
            )
        object.__setattr__(self, "P", P)
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "gamma", gamma)

    @staticmethod
    def _check_probabilities(lo: float, hi: float, P: Any, S: int, A: int) -> None:
        if lo >= 0 and hi <= 1:
            return
        if sp.issparse(P):
            coo = P.tocoo()
            k = int(np.flatnonzero((coo.data < 0) | (coo.data > 1))[0])
            (s, a), s2, p = divmod(int(coo.row[k]), A), int(coo.col[k]), coo.data[k]
        else:
            s, a, s2 = (int(i) for i in np.argwhere((P < 0) | (P > 1))[0])
            p = P[s, a, s2]
        raise ValueError(f"P(s'={s2}|s={s}, a={a}) = {p} is not a probability in [0, 1]")

    # ----------------------------------------------------------------------------------- shapes
    @property
    def n_states(self) -> int:
        return self.R.shape[0]

    @property
    def n_actions(self) -> int:
        return self.R.shape[1]

    @property
    def is_sparse(self) -> bool:
        return sp.issparse(self.P)

    def dense_P(self) -> np.ndarray:
        """P as a dense (S, A, S') array (only sensible for small S)."""
        if self.is_sparse:
            return self.P.toarray().reshape(self.n_states, self.n_actions, self.n_states)
        return self.P

    # ------------------------------------------------------------------------ model operations
    def expected_next(self, v: np.ndarray) -> np.ndarray:
        """sum_s' P(s'|s,a) v(s') for every (s, a), shape (S, A)."""
        if self.is_sparse:
            return (self.P @ v).reshape(self.n_states, self.n_actions)
        return self.P @ v

    def q_from_v(self, v: np.ndarray) -> np.ndarray:
        """q(s,a) = R(s,a) + gamma sum_s' P(s'|s,a) v(s')."""
        return self.R + self.gamma * self.expected_next(v)

    def r_pi(self, pi: np.ndarray) -> np.ndarray:
        """r_pi(s) = sum_a pi(a|s) R(s,a)."""
        return np.einsum("sa,sa->s", pi, self.R)

    def P_pi(self, pi: np.ndarray) -> Any:
        """P_pi(s,s') = sum_a pi(a|s) P(s'|s,a): dense (S, S) or sparse CSR."""
        if self.is_sparse:
            S, A = self.n_states, self.n_actions
            rows = np.repeat(np.arange(S), A)
            weights = sp.csr_matrix((pi.ravel(), (rows, np.arange(S * A))), shape=(S, S * A))
            return (weights @ self.P).tocsr()
        return np.einsum("sa,sat->st", pi, self.P)

    def sample_next(self, s: int, a: int, rng: np.random.Generator) -> int:
        """Draw s' ~ P(.|s,a)."""
        if self.is_sparse:
            row = self.P.getrow(s * self.n_actions + a)
            return int(rng.choice(row.indices, p=row.data / row.data.sum()))
        return int(rng.choice(self.n_states, p=self.P[s, a]))

    def check_policy(self, policy: Any) -> np.ndarray:
        """`policy` as an (S, A) array of probabilities (see `check_policy`)."""
        return check_policy(policy, self.n_states, self.n_actions)

    # --------------------------------------------------------------------------- constructors
    @classmethod
    def from_arrays(
        cls, P: Any, R: Any, gamma: float, episodic: bool = False, layout: str = "auto"
    ) -> "TabularMDP":
        """Build an MDP from the conventions of the MDP toolbox as well as our own.

        P: (S, A, S') array, (A, S, S') array, a list of A (S, S) arrays or sparse matrices, or a
        sparse (S*A, S') matrix; `layout` ('SAS' or 'ASS') settles a dense P with S == A. R: (S, A), (S,) (reward of the state, for every action) or
        (A, S, S') (reward of each transition; its expectation under P is taken).
        """
        if sp.issparse(P):
            Pm = sp.csr_matrix(P)
            S = Pm.shape[1]
            A = Pm.shape[0] // S if S else 0
            P_dense = None
        elif isinstance(P, (list, tuple)) and len(P) and sp.issparse(P[0]):
            A, S = len(P), P[0].shape[0]
            for a, Pa in enumerate(P):
                if Pa.shape != (S, S):
                    raise ValueError(f"P[{a}] has shape {Pa.shape}, expected ({S}, {S})")
            # row s*A + a of the stacked matrix is P[a][s]
            Pm = sp.vstack([sp.csr_matrix(Pa) for Pa in P]).tocsr()
            order = (np.arange(S)[:, None] + S * np.arange(A)[None, :]).ravel()
            Pm = Pm[order]
            P_dense = None
        else:
            arr = np.asarray(P, dtype=np.float64)
            if arr.ndim != 3 or arr.shape[0] != arr.shape[2] and arr.shape[1] != arr.shape[2]:
                raise ValueError(f"P must be (S, A, S) or (A, S, S) (MDP toolbox), got shape {arr.shape}")
            if layout == "auto":
                if arr.shape[0] == arr.shape[1] == arr.shape[2]:
                    raise ValueError(
                        f"P of shape {arr.shape} is ambiguous (S == A): pass layout='SAS' or layout='ASS'"
                    )
                layout = "SAS" if arr.shape[0] == arr.shape[2] else "ASS"
            if layout not in ("SAS", "ASS"):
                raise ValueError(f"layout must be 'auto', 'SAS' or 'ASS', got {layout!r}")
            P_dense = arr.transpose(1, 0, 2) if layout == "ASS" else arr
            S, A = P_dense.shape[0], P_dense.shape[1]
            Pm = None
        R_arr = R.toarray() if sp.issparse(R) else np.asarray(R, dtype=np.float64)
        if R_arr.shape == (S, A):
            R_sa = R_arr
        elif R_arr.shape == (S,):
            R_sa = np.repeat(R_arr[:, None], A, axis=1)
        elif R_arr.shape == (A, S, S):
            if P_dense is not None:
                R_sa = np.einsum("sat,ast->sa", P_dense, R_arr)
            else:
                rows = Pm.tocoo()
                s, a = np.divmod(rows.row, A)
                R_sa = np.zeros((S, A))
                np.add.at(R_sa, (s, a), rows.data * R_arr[a, s, rows.col])
        else:
            raise ValueError(f"R must have shape (S, A), (S,) or (A, S, S) with S={S}, A={A}; got {R_arr.shape}")
        return cls(P_dense if P_dense is not None else Pm, R_sa, gamma, episodic)

    @classmethod
    def from_gymnasium(cls, env: Any, gamma: float, episodic: bool | None = None) -> "TabularMDP":
        """The exact model of a Gymnasium toy-text env that exposes `env.unwrapped.P`.

        `P[s][a]` is a list of (prob, next_state, reward, terminated). A terminated transition leads to
        one extra absorbing state (index S, zero reward) so the value after termination is zero even
        where the env's own next state would go on (Taxi). The extra state is added only when needed.
        `episodic` defaults to gamma == 1.
        """
        model: Sequence = getattr(getattr(env, "unwrapped", env), "P", None)
        if model is None:
            raise ValueError(f"{env!r} has no `unwrapped.P` table; only toy-text style envs expose a model")
        S = len(model)
        A = len(model[0])
        has_terminal = any(t[3] for s in range(S) for a in range(A) for t in model[s][a])
        n = S + 1 if has_terminal else S
        rows, cols, probs = [], [], []
        R = np.zeros((n, A))
        for s in range(S):
            if len(model[s]) != A:
                raise ValueError(f"state {s} has {len(model[s])} actions, state 0 has {A}")
            for a in range(A):
                for p, s2, r, terminated in model[s][a]:
                    rows.append(s * A + a)
                    cols.append(S if terminated else int(s2))
                    probs.append(float(p))
                    R[s, a] += float(p) * float(r)
        if has_terminal:
            rows.extend(S * A + a for a in range(A))
            cols.extend([S] * A)
            probs.extend([1.0] * A)
        P = sp.csr_matrix((probs, (rows, cols)), shape=(n * A, n))
        return cls(P, R, gamma, episodic=(gamma == 1) if episodic is None else episodic)
