"""Experience storage: a fixed-size rollout buffer for on-policy methods and a circular replay buffer.

RolloutBuffer holds one rollout of T steps from n_envs environments as (T, n_envs, ...) tensors, in the
layout `bellman.core.returns` expects (values has T + 1 rows); `bellman.deep.rollout.collect_rollout` fills
it. ReplayBuffer holds the last `capacity` transitions (s, a, r, s', terminated) and samples uniform
minibatches (Lin 1992; Mnih et al. 2015).
Both expose state_dict / load_state_dict, so an agent's checkpoint carries them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from gymnasium import spaces

from bellman.core.resources import check_memory
from bellman.deep.nets import obs_dim

if TYPE_CHECKING:
    from bellman.deep.agent import Transition


class RolloutBuffer:
    """One on-policy rollout: obs[t], actions[t], log_probs[t], rewards[t], terminated[t], dones[t],
    valid[t] (a real transition, not the reset step of a vector env) and values[t] for t < T + 1."""

    def __init__(self, n_steps: int, n_envs: int, obs_dim: int, action_shape: tuple[int, ...],
                 discrete: bool):
        if n_steps < 1 or n_envs < 1:
            raise ValueError(f"n_steps and n_envs must be >= 1, got {n_steps} and {n_envs}")
        t, n = n_steps, n_envs
        per_row = 4 * (obs_dim + int(np.prod(action_shape, dtype=np.int64)) + 4) + 3
        check_memory(f"a rollout buffer of {t:,} steps x {n:,} envs", t * n * per_row, "n_steps or n_envs")
        self.n_steps, self.n_envs = n_steps, n_envs
        self.obs = torch.zeros(t, n, obs_dim)
        self.actions = torch.zeros((t, n, *action_shape), dtype=torch.long if discrete else torch.float32)
        self.log_probs = torch.zeros(t, n)
        self.rewards = torch.zeros(t, n)
        self.terminated = torch.zeros(t, n, dtype=torch.bool)
        self.dones = torch.zeros(t, n, dtype=torch.bool)
        self.valid = torch.zeros(t, n, dtype=torch.bool)
        self.values = torch.zeros(t + 1, n)
        self._views()

    def _views(self) -> None:
        # numpy views sharing the tensors' memory: a numpy row write costs far less than a torch one
        self._rows = tuple(x.numpy() for x in (self.obs, self.actions, self.log_probs, self.values, self.rewards,
                                               self.terminated, self.dones, self.valid))

    def __getstate__(self) -> dict[str, Any]:  # pickled (sent by a rollout worker) without the numpy views
        return {k: v for k, v in vars(self).items() if k != "_rows"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self._views()

    @classmethod
    def cat(cls, buffers: list[RolloutBuffer]) -> RolloutBuffer:
        """Rollouts of the same length side by side: one buffer whose env copies are those of `buffers`, in
        order (the rollout workers' batches as one)."""
        if len({b.n_steps for b in buffers}) != 1:
            raise ValueError(f"rollouts of different lengths cannot be joined: {[b.n_steps for b in buffers]}")
        out = cls.__new__(cls)
        out.n_steps, out.n_envs = buffers[0].n_steps, sum(b.n_envs for b in buffers)
        for k, v in vars(buffers[0]).items():
            if isinstance(v, torch.Tensor):
                setattr(out, k, torch.cat([getattr(b, k) for b in buffers], dim=1))
        out._views()
        return out

    @classmethod
    def for_spaces(cls, n_steps: int, n_envs: int, observation_space: spaces.Space,
                   action_space: spaces.Space) -> RolloutBuffer:
        """A buffer for encoded observations of `observation_space` and actions of `action_space`."""
        return cls(n_steps, n_envs, obs_dim(observation_space), action_space.shape,
                   isinstance(action_space, spaces.Discrete))

    def store_action(self, t: int, obs: np.ndarray, action: np.ndarray, log_prob: np.ndarray,
                     value: np.ndarray) -> None:
        """Row t, before the step: the encoded observation s_t, a_t, ln pi(a_t|s_t) and v(s_t)."""
        s, a, log_p, v = self._rows[:4]
        s[t], a[t], log_p[t], v[t] = obs, action, log_prob, value

    def store_outcome(self, t: int, step: Transition) -> None:
        """Row t, after the step: its reward, terminated, done and valid flags."""
        rewards, terminated, dones, valid = self._rows[4:]
        rewards[t], terminated[t], valid[t] = step.reward, step.terminated, step.valid
        dones[t] = step.terminated | step.truncated

    def store_last_value(self, value: np.ndarray) -> None:
        """values[T]: v of the state after the last step (the bootstrap of the rollout's tail)."""
        self._rows[3][-1] = value

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        """The valid rows of a (T, n_envs, ...) tensor as one batch (B, ...)."""
        return x[: self.n_steps][self.valid]

    def state_dict(self) -> dict[str, Any]:
        return {k: v.clone() for k, v in vars(self).items() if isinstance(v, torch.Tensor)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            getattr(self, k).copy_(v)


class ReplayBuffer:
    """A circular buffer of transitions (s, a, r, s', terminated), sampled uniformly."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 action_dtype: np.dtype | type = np.float32, obs_dtype: np.dtype | type = np.float32):
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive int, got {capacity!r}")
        per_row = (2 * int(np.prod(obs_shape, dtype=np.int64)) * np.dtype(obs_dtype).itemsize
                   + int(np.prod(action_shape, dtype=np.int64)) * np.dtype(action_dtype).itemsize + 8)
        check_memory(f"a replay buffer of {capacity:,} transitions", capacity * per_row, "buffer_size")
        self.capacity = capacity
        self.obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.next_obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.actions = np.zeros((capacity, *action_shape), dtype=action_dtype)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Store a batch of transitions (one row per env); rows where `valid` is False are skipped."""
        rows = slice(None) if valid is None else np.asarray(valid, dtype=bool)
        obs, action, next_obs = np.asarray(obs)[rows], np.asarray(action)[rows], np.asarray(next_obs)[rows]
        reward, terminated = np.asarray(reward)[rows], np.asarray(terminated)[rows]
        idx = (self.pos + np.arange(len(obs))) % self.capacity
        self.obs[idx], self.actions[idx], self.next_obs[idx] = obs, action, next_obs
        self.rewards[idx], self.terminated[idx] = reward, terminated
        self.pos = int((self.pos + len(obs)) % self.capacity)
        self.size = int(min(self.size + len(obs), self.capacity))

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """A uniform minibatch (with replacement) as tensors obs, actions, rewards, next_obs, terminated."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        idx = rng.integers(0, self.size, size=batch_size)
        return {"obs": torch.as_tensor(self.obs[idx]), "actions": torch.as_tensor(self.actions[idx]),
                "rewards": torch.as_tensor(self.rewards[idx]), "next_obs": torch.as_tensor(self.next_obs[idx]),
                "terminated": torch.as_tensor(self.terminated[idx])}

    def state_dict(self) -> dict[str, Any]:
        keys = ("obs", "next_obs", "actions", "rewards", "terminated")
        return {**{k: getattr(self, k)[: self.size].copy() for k in keys}, "pos": self.pos, "size": self.size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in ("obs", "next_obs", "actions", "rewards", "terminated"):
            getattr(self, k)[: state["size"]] = state[k]
        self.pos, self.size = int(state["pos"]), int(state["size"])
