"""The result every planning algorithm returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PlanningResult:
    """v (S,), q (S, A), a deterministic policy as (S, A) probabilities, the number of iterations,
    the values after each iteration (v_0 first; empty unless kept) and the sup-norm change of each."""

    v: np.ndarray
    q: np.ndarray
    policy: np.ndarray
    iterations: int
    history: list[np.ndarray] = field(default_factory=list)
    residuals: list[float] = field(default_factory=list)

    @property
    def actions(self) -> np.ndarray:
        """The greedy action of each state, shape (S,)."""
        return self.policy.argmax(axis=1)
