"""The grid world of the course (Zhao 2025, "Mathematical Foundations of Reinforcement Learning", section 1.1,
used through chapters 1-10) as a Gymnasium environment with its exact model.

Cells are (row, col), 0-based, state = row * n_cols + col. Actions: 0 up, 1 right, 2 down, 3 left,
4 stay. Moving off the grid keeps the agent in place with r_boundary; entering (or staying on) a
forbidden cell gives r_forbidden; entering (or staying on) the target gives r_target; any other move
r_other. With probability `slip` the executed action is drawn uniformly from the five instead.
The model is built with vectorised sparse arrays, so a 1000 x 1000 grid (one million states) is cheap.
"""

from __future__ import annotations

from typing import Any, Iterable

import gymnasium as gym
import numpy as np
import scipy.sparse as sp

from bellman.core.config import check_int
from bellman.mdp import TabularMDP

ACTIONS = ("up", "right", "down", "left", "stay")
MOVES = np.array([(-1, 0), (0, 1), (1, 0), (0, -1), (0, 0)])
COURSE_FORBIDDEN = ((1, 1), (1, 2), (2, 2), (3, 1), (3, 3), (4, 1))
COURSE_TARGET = (3, 2)


class GridWorld(gym.Env):
    """The course grid world.

    With the defaults it is the 5 x 5 world of the course: forbidden cells (1,1), (1,2), (2,2), (3,1),
    (3,3), (4,1) and the target (3,2). On other sizes `forbidden=None` means none and `target=None`
    the bottom-right cell.

    Args:
        n_rows, n_cols: grid size.
        forbidden: cells (row, col) that give r_forbidden when entered.
        target: the target cell.
        start: the cell `reset` starts from (`reset(options={"state": s})` starts anywhere).
        r_boundary, r_forbidden, r_target, r_other: rewards.
        gamma: discount of the exact model `env.mdp`.
        block_forbidden: forbidden cells cannot be entered (the agent bounces, gets r_forbidden).
        terminal_target: reaching the target ends the episode (the model makes it absorbing, reward 0).
        slip: probability that a uniformly random action is executed instead of the chosen one.
        max_steps: truncate episodes after this many steps (None: never).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # the rate of Gymnasium's text envs (FrozenLake)

    def __init__(
        self,
        n_rows: int = 5,
        n_cols: int = 5,
        forbidden: Iterable[tuple[int, int]] | None = None,
        target: tuple[int, int] | None = None,
        start: tuple[int, int] = (0, 0),
        r_boundary: float = -1.0,
        r_forbidden: float = -1.0,
        r_target: float = 1.0,
        r_other: float = 0.0,
        gamma: float = 0.9,
        block_forbidden: bool = False,
        terminal_target: bool = False,
        slip: float = 0.0,
        max_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        self.n_rows, self.n_cols = check_int("n_rows", n_rows), check_int("n_cols", n_cols)
        course = (self.n_rows, self.n_cols) == (5, 5)
        if forbidden is None:
            forbidden = COURSE_FORBIDDEN if course else ()
        if target is None:
            target = COURSE_TARGET if course else (self.n_rows - 1, self.n_cols - 1)
        self.forbidden = tuple(self._cell(c, "forbidden cell") for c in forbidden)
        self.target = self._cell(target, "target")
        self.start = self._cell(start, "start")
        if self.target in self.forbidden:
            raise ValueError(f"the target {self.target} is also a forbidden cell; choose a free cell")
        if block_forbidden and self.start in self.forbidden:
            raise ValueError(f"start {self.start} is a forbidden cell, which blocks with block_forbidden=True")
        rewards = dict(r_boundary=r_boundary, r_forbidden=r_forbidden, r_target=r_target, r_other=r_other)
        for name, r in rewards.items():
            if not np.isfinite(r):
                raise ValueError(f"{name} must be a finite number, got {r}")
        if not 0.0 <= slip <= 1.0:
            raise ValueError(f"slip must be a probability in [0, 1], got {slip}")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be a positive integer or None, got {max_steps}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.r_boundary, self.r_forbidden = float(r_boundary), float(r_forbidden)
        self.r_target, self.r_other = float(r_target), float(r_other)
        self.block_forbidden, self.terminal_target = bool(block_forbidden), bool(terminal_target)
        self.slip, self.max_steps, self.render_mode = float(slip), max_steps, render_mode

        S = self.n_rows * self.n_cols
        self.observation_space = gym.spaces.Discrete(S)
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        self.next_state, self.reward = self._deterministic_model()
        self.mdp = self._build_mdp(gamma)
        self._s = self.state_of(self.start)
        self._t = 0

    # ---------------------------------------------------------------------------------- cells
    def _cell(self, cell: Any, what: str) -> tuple[int, int]:
        try:
            r, c = cell
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be a (row, col) pair of integers, got {cell!r}") from None
        if any(isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)) for x in (r, c)):
            raise ValueError(f"{what} must be a (row, col) pair of integers, got {cell!r}")
        r, c = int(r), int(c)
        if not (0 <= r < self.n_rows and 0 <= c < self.n_cols):
            raise ValueError(f"{what} {(r, c)} is outside the {self.n_rows} x {self.n_cols} grid")
        return (r, c)

    def state_of(self, cell: tuple[int, int]) -> int:
        return cell[0] * self.n_cols + cell[1]

    def cell_of(self, s: int) -> tuple[int, int]:
        return divmod(int(s), self.n_cols)

    @property
    def target_state(self) -> int:
        return self.state_of(self.target)

    # ---------------------------------------------------------------------------------- model
    def _deterministic_model(self) -> tuple[np.ndarray, np.ndarray]:
        """next_state[s, a] and reward[s, a] of the move without slipping, both (S, 5)."""
        S = self.n_rows * self.n_cols
        rows, cols = np.divmod(np.arange(S), self.n_cols)
        r2 = rows[:, None] + MOVES[None, :, 0]
        c2 = cols[:, None] + MOVES[None, :, 1]
        off = (r2 < 0) | (r2 >= self.n_rows) | (c2 < 0) | (c2 >= self.n_cols)
        here = np.broadcast_to(np.arange(S)[:, None], off.shape)
        nxt = np.where(off, here, r2 * self.n_cols + c2)
        is_forbidden = np.zeros(S, dtype=bool)
        is_forbidden[[self.state_of(c) for c in self.forbidden]] = True
        into_forbidden = is_forbidden[nxt] & ~off
        if self.block_forbidden:
            nxt = np.where(into_forbidden, here, nxt)
        reward = np.full(nxt.shape, self.r_other)
        reward[nxt == self.target_state] = self.r_target
        reward[into_forbidden] = self.r_forbidden
        reward[off] = self.r_boundary
        if self.terminal_target:  # the target is absorbing with zero reward
            nxt[self.target_state] = self.target_state
            reward[self.target_state] = 0.0
        return nxt, reward

    def _build_mdp(self, gamma: float) -> TabularMDP:
        S, A = self.next_state.shape
        rows = np.arange(S * A)
        P = sp.csr_matrix((np.full(S * A, 1.0 - self.slip), (rows, self.next_state.ravel())), shape=(S * A, S))
        R = (1.0 - self.slip) * self.reward
        if self.slip > 0:
            # with probability slip, action b ~ Uniform(A) is executed instead
            slip_rows = np.repeat(rows, A)
            slip_next = np.repeat(self.next_state, A, axis=0).ravel()
            P = P + sp.csr_matrix(
                (np.full(S * A * A, self.slip / A), (slip_rows, slip_next)), shape=(S * A, S)
            )
            R = R + self.slip * self.reward.mean(axis=1, keepdims=True)
            if self.terminal_target:
                t = self.target_state
                R[t] = 0.0
        return TabularMDP(P.tocsr(), R, gamma)

    # ------------------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        options = options or {}
        if "state" in options:
            s = int(options["state"])
            if not 0 <= s < self.observation_space.n:
                raise ValueError(f"options['state'] = {s} is not a state in 0..{self.observation_space.n - 1}")
        elif "cell" in options:
            s = self.state_of(self._cell(options["cell"], "options['cell']"))
        else:
            s = self.state_of(self.start)
        self._s, self._t = s, 0
        return s, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        if not (isinstance(action, (int, np.integer)) and 0 <= action < len(ACTIONS)):
            raise ValueError(f"action must be an integer in 0..4 (up, right, down, left, stay), got {action!r}")
        a = int(action)
        if self.slip > 0 and self.np_random.random() < self.slip:
            a = int(self.np_random.integers(len(ACTIONS)))
        s2, r = int(self.next_state[self._s, a]), float(self.reward[self._s, a])
        self._s, self._t = s2, self._t + 1
        terminated = self.terminal_target and s2 == self.target_state
        truncated = self.max_steps is not None and self._t >= self.max_steps and not terminated
        return s2, r, terminated, truncated, {}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        lines = []
        for r in range(self.n_rows):
            row = ""
            for c in range(self.n_cols):
                s = self.state_of((r, c))
                row += "A" if s == self._s else "T" if (r, c) == self.target else "#" if (r, c) in self.forbidden else "."
            lines.append(row)
        return "\n".join(lines) + "\n"
