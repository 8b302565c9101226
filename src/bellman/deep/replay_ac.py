"""The shared core of the replay-based actor-critics for continuous actions (DDPG, TD3, SAC): the loop of
Stable-Baselines3's `OffPolicyAlgorithm`, kept flat.

Actions live in [-1, 1]^d inside the agent (the actor's tanh range; the replay buffer stores them so) and are
rescaled to the env's bounds [low, high] only when the env is stepped. Each `train_iteration`:

    1. step the n_envs copies train_freq // n_envs times (at least once) with `explore()`: uniform random
       actions for the first `learning_starts` env steps, then the algorithm's `behaviour()` actions;
       store each valid transition (s, a, r, s', terminated) in the replay buffer;
    2. once learning has started (learning rates annealed with anneal_lr), take `gradient_steps` updates, each on a uniform minibatch
       (`gradient_step`, the algorithm's own).

A truncated episode (time limit) is stored as not terminated, so its target bootstraps from s'.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from bellman.deep.agent import Agent, Transition
from bellman.deep.buffers import ReplayBuffer
from bellman.deep.nets import mlp, obs_dim


class Critic(nn.Module):
    """q(s, a; w) for an action scaled to [-1, 1]^d."""

    def __init__(self, observation_space: spaces.Space, action_dim: int, hidden: tuple[int, ...], activation: str):
        super().__init__()
        self.net = mlp(obs_dim(observation_space) + action_dim, hidden, 1, activation, out_gain=1.0)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], dim=-1)).squeeze(-1)


class DeterministicActor(nn.Module):
    """mu(s; theta) = tanh(MLP(s)) in [-1, 1]^d; the agent rescales it to the action bounds."""

    def __init__(self, observation_space: spaces.Space, action_dim: int, hidden: tuple[int, ...], activation: str,
                 out_gain: float = 0.01):
        super().__init__()
        self.net = mlp(obs_dim(observation_space), hidden, action_dim, activation, out_gain=out_gain)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))


class ReplayActorCritic(Agent):
    """Base of DDPG, TD3 and SAC: bounded Box actions, the replay buffer and the collect / update loop (see
    the module docstring). A subclass implements `build` (networks and optimisers), `behaviour` (exploratory
    actions in [-1, 1] for `self.obs`), `act` and `gradient_step`."""

    action_spaces = (spaces.Box,)
    counters: ClassVar[tuple[str, ...]] = ("n_updates",)

    def setup(self) -> None:
        c = self.config
        low, high = self.action_space.low, self.action_space.high
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError(f"{type(self).__name__} needs a bounded action space, got {self.action_space}")
        self.action_dim = int(np.prod(self.action_space.shape))
        self.low = torch.as_tensor(low.reshape(-1), dtype=torch.float32)
        self.high = torch.as_tensor(high.reshape(-1), dtype=torch.float32)
        discrete_obs = isinstance(self.observation_space, spaces.Discrete)
        self.buffer = ReplayBuffer(c.buffer_size, self.observation_space.shape, (self.action_dim,), np.float32,
                                   np.int64 if discrete_obs else np.float32)
        self.n_updates = 0  # gradient steps taken so far (checkpointed: TD3's delayed updates count them)
        self.build()

    def build(self) -> None:
        """Networks, target networks and optimisers."""
        raise NotImplementedError

    def behaviour(self) -> np.ndarray:
        """Exploratory actions in [-1, 1] for `self.obs` (one row per env copy), after learning_starts."""
        raise NotImplementedError

    def gradient_step(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor,
                      terminated: torch.Tensor) -> dict[str, float]:
        """One update on a minibatch (encoded observations, actions in [-1, 1]); the scalars to log."""
        raise NotImplementedError

    def observe(self, t: Transition) -> None:
        """Called after every env step (DDPG resets its OU noise at episode ends)."""

    def scale_up(self, a: torch.Tensor) -> torch.Tensor:
        """[-1, 1] -> [low, high]."""
        return self.low + (a + 1.0) * 0.5 * (self.high - self.low)

    def explore(self) -> np.ndarray:
        """A batch of exploratory actions in [-1, 1]: uniform before learning_starts, else `behaviour()`."""
        if self.step < self.config.learning_starts:
            return self.rng.uniform(-1.0, 1.0, size=(self.config.n_envs, self.action_dim))
        return self.behaviour()

    def train_iteration(self) -> dict[str, float]:
        c = self.config
        for _ in range(max(1, c.train_freq // c.n_envs)):
            a = self.explore()
            t = self.env_step(self.scale_up(torch.as_tensor(a, dtype=torch.float32)).numpy()
                              .reshape(c.n_envs, *self.action_space.shape))
            self.buffer.add(t.obs, a, t.reward, t.next_obs, t.terminated, t.valid)
            self.observe(t)
        if self.step < c.learning_starts:
            return {}
        if c.anneal_lr:  # every optimiser's rate, as Stable-Baselines3's schedule does
            self.anneal_learning_rate(True, *(v for v in vars(self).values() if isinstance(v, torch.optim.Optimizer)))
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for _ in range(c.gradient_steps):
            batch = self.buffer.sample(c.batch_size, self.rng)
            self.n_updates += 1
            out = self.gradient_step(self.encode(batch["obs"].numpy()), batch["actions"], batch["rewards"],
                                     self.encode(batch["next_obs"].numpy()), batch["terminated"])
            for k, v in out.items():
                sums[k], counts[k] = sums.get(k, 0.0) + v, counts.get(k, 0) + 1
        return {k: v / counts[k] for k, v in sums.items()}
