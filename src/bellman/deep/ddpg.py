"""Deep deterministic policy gradient (Lillicrap et al. 2016, "Continuous control with deep reinforcement
learning", arXiv:1509.02971), built on the deterministic policy gradient theorem (Silver et al. 2014,
"Deterministic Policy Gradient Algorithms", ICML, theorem 1; Zhao 2025, "Mathematical Foundations of
Reinforcement Learning", section 10.4).

A deterministic actor mu(s; theta) acts with exploration noise, a = clip(mu(s) + noise); transitions go to
a replay buffer. Each gradient step on a minibatch (s, a, r, s', terminated):

    critic:  minimise E[(q(s, a; w) - td_target)^2],  td_target = r + gamma (1 - terminated) q(s', mu(s'; theta-); w-)
    actor:   ascend  E[q(s, mu(s; theta); w)], whose gradient is E[grad_theta mu(s) grad_a q(s, a)|a=mu(s)]  (DPG)
    targets: w- <- tau w + (1 - tau) w-,  theta- <- tau theta + (1 - tau) theta-  (Polyak averaging)

Noise is Gaussian N(0, sigma^2) or Ornstein-Uhlenbeck (temporally correlated, the paper's choice), in
units of the action half-range (the actor works on [-1, 1] and is rescaled to the action bounds).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from bellman.core.config import field
from bellman.deep.agent import Agent, ReplayConfig
from bellman.deep.buffers import ReplayBuffer
from bellman.deep.nets import mlp, obs_dim
from bellman.deep.targets import polyak_update, td_target


@dataclasses.dataclass
class DDPGConfig(ReplayConfig):
    """Defaults of Stable-Baselines3 DDPG (net_arch [400, 300], Adam 1e-3, tau 0.005, batch 256);
    `DDPGConfig.for_env("Pendulum-v1")` adds the rl-baselines3-zoo tuned setting. The replay settings are
    `ReplayConfig`'s (tau: Polyak rate of both target networks). The OU process is
    dx = theta (0 - x) dt + sigma sqrt(dt) N(0, 1) (the paper: theta 0.15, sigma 0.2).
    """

    learning_rate: float = 1e-3
    hidden: tuple[int, ...] = (400, 300)
    activation: str = "relu"
    noise: Literal["normal", "ou"] = field("normal", "exploration noise: Gaussian or Ornstein-Uhlenbeck")
    noise_std: float = field(0.1, "sigma of the noise in units of the action half-range")
    ou_theta: float = field(0.15, "theta of the OU process")
    ou_dt: float = field(1e-2, "dt of the OU process")

    presets = {
        # rl-baselines3-zoo hyperparams/ddpg.yml, Pendulum-v1
        "Pendulum-v1": dict(gamma=0.98, buffer_size=200_000, learning_starts=10_000, noise="normal", noise_std=0.1,
                            gradient_steps=1, train_freq=1, learning_rate=1e-3, hidden=(400, 300)),
    }

    def check(self) -> None:
        super().check()
        self.require(self.noise_std >= 0, "noise_std", "a float >= 0")
        self.require(self.ou_theta > 0, "ou_theta", "a float > 0")
        self.require(self.ou_dt > 0 and self.ou_theta * self.ou_dt < 1, "ou_dt", "a float > 0 with ou_theta * ou_dt < 1")


class OrnsteinUhlenbeckNoise:
    """x_{t+1} = x_t + theta (mu - x_t) dt + sigma sqrt(dt) eps_t, eps_t ~ N(0, I) (Uhlenbeck & Ornstein 1930),
    one process per row of `shape`; `reset(rows)` puts finished episodes' processes back to mu."""

    def __init__(self, shape: tuple[int, ...], sigma: float, theta: float = 0.15, dt: float = 1e-2, mu: float = 0.0):
        self.sigma, self.theta, self.dt, self.mu = sigma, theta, dt, mu
        self.x = np.full(shape, mu, dtype=np.float64)

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        self.x = self.x + self.theta * (self.mu - self.x) * self.dt + self.sigma * np.sqrt(self.dt) * rng.standard_normal(self.x.shape)
        return self.x.copy()

    def reset(self, rows: Any = slice(None)) -> None:
        self.x[rows] = self.mu

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.x.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.x = np.array(state["x"], dtype=np.float64)


class Actor(nn.Module):
    """mu(s; theta) in [-1, 1]^d (tanh); the agent rescales it to the action bounds."""

    def __init__(self, observation_space: spaces.Space, action_dim: int, hidden: tuple[int, ...], activation: str):
        super().__init__()
        self.net = mlp(obs_dim(observation_space), hidden, action_dim, activation, out_gain=0.01)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))


class Critic(nn.Module):
    """q(s, a; w) for an action scaled to [-1, 1]^d."""

    def __init__(self, observation_space: spaces.Space, action_dim: int, hidden: tuple[int, ...], activation: str):
        super().__init__()
        self.net = mlp(obs_dim(observation_space) + action_dim, hidden, 1, activation, out_gain=1.0)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], dim=-1)).squeeze(-1)


class DDPG(Agent):
    """DDPG for Box (continuous) action spaces."""

    config_class = DDPGConfig
    action_spaces = (spaces.Box,)

    def setup(self) -> None:
        c = self.config
        low, high = self.action_space.low, self.action_space.high
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError(f"DDPG needs a bounded action space, got {self.action_space}")
        self.action_dim = int(np.prod(self.action_space.shape))
        self.low = torch.as_tensor(low.reshape(-1), dtype=torch.float32)
        self.high = torch.as_tensor(high.reshape(-1), dtype=torch.float32)
        self.mu = Actor(self.observation_space, self.action_dim, c.hidden, c.activation)
        self.q = Critic(self.observation_space, self.action_dim, c.hidden, c.activation)
        self.mu_target = copy.deepcopy(self.mu).requires_grad_(False)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.mu_optimizer = torch.optim.Adam(self.mu.parameters(), lr=c.learning_rate, fused=True)
        self.q_optimizer = torch.optim.Adam(self.q.parameters(), lr=c.learning_rate, fused=True)
        discrete_obs = isinstance(self.observation_space, spaces.Discrete)
        # actions are stored scaled to [-1, 1]
        self.buffer = ReplayBuffer(c.buffer_size, self.observation_space.shape, (self.action_dim,), np.float32,
                                   np.int64 if discrete_obs else np.float32)
        self.ou_noise = OrnsteinUhlenbeckNoise((c.n_envs, self.action_dim), c.noise_std, c.ou_theta, c.ou_dt)

    def scale_up(self, a: torch.Tensor) -> torch.Tensor:
        """[-1, 1] -> [low, high]."""
        return self.low + (a + 1.0) * 0.5 * (self.high - self.low)

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        a = self.mu(obs)
        if not deterministic:
            noise = self.rng.normal(0.0, self.config.noise_std, size=a.shape)
            a = (a + torch.as_tensor(noise, dtype=torch.float32)).clamp(-1.0, 1.0)
        return self.scale_up(a).reshape(-1, *self.action_space.shape)

    def explore(self) -> np.ndarray:
        """A batch of exploratory actions in [-1, 1]: uniform before learning_starts, else mu(s) + noise."""
        c = self.config
        if self.step < c.learning_starts:
            return self.rng.uniform(-1.0, 1.0, size=(c.n_envs, self.action_dim))
        with torch.inference_mode():
            a = self.mu(self.encode(self.obs)).numpy()
        noise = self.ou_noise(self.rng) if c.noise == "ou" else self.rng.normal(0.0, c.noise_std, size=a.shape)
        return np.clip(a + noise, -1.0, 1.0)

    def train_iteration(self) -> dict[str, float]:
        c = self.config
        for _ in range(max(1, c.train_freq // c.n_envs)):
            a = self.explore()
            t = self.env_step(self.scale_up(torch.as_tensor(a, dtype=torch.float32)).numpy()
                              .reshape(c.n_envs, *self.action_space.shape))
            self.buffer.add(t.obs, a, t.reward, t.next_obs, t.terminated, t.valid)
            self.ou_noise.reset(t.terminated | t.truncated)
        if self.step < c.learning_starts:
            return {}
        q_losses, mu_losses = [], []
        for _ in range(c.gradient_steps):
            batch = self.buffer.sample(c.batch_size, self.rng)
            obs, next_obs, a = self.encode(batch["obs"].numpy()), self.encode(batch["next_obs"].numpy()), batch["actions"]
            with torch.no_grad():
                q_next = self.q_target(next_obs, self.mu_target(next_obs))
                target = td_target(batch["rewards"], batch["terminated"], q_next, c.gamma)
            q_loss = F.mse_loss(self.q(obs, a), target)
            self.q_optimizer.zero_grad(set_to_none=True)
            q_loss.backward()
            self.q_optimizer.step()

            self.q.requires_grad_(False)  # the actor's step differentiates through q but changes only theta
            mu_loss = -self.q(obs, self.mu(obs)).mean()  # minus the DPG objective
            self.mu_optimizer.zero_grad(set_to_none=True)
            mu_loss.backward()
            self.mu_optimizer.step()
            self.q.requires_grad_(True)

            polyak_update(self.q_target, self.q, c.tau)
            polyak_update(self.mu_target, self.mu, c.tau)
            q_losses.append(q_loss.item())
            mu_losses.append(mu_loss.item())
        return {"critic_loss": float(np.mean(q_losses)), "actor_loss": float(np.mean(mu_losses))}
