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

from bellman.core.config import field
from bellman.deep.agent import ReplayConfig, Transition
from bellman.deep.replay_ac import Critic, DeterministicActor, ReplayActorCritic
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


Actor = DeterministicActor  # mu(s; theta) in [-1, 1]^d, orthogonal initialisation (head gain 0.01)


class DDPG(ReplayActorCritic):
    """DDPG for Box (continuous) action spaces (the loop: `bellman.deep.replay_ac`)."""

    config_class = DDPGConfig

    def build(self) -> None:
        c = self.config
        self.mu = Actor(self.observation_space, self.action_dim, c.hidden, c.activation)
        self.q = Critic(self.observation_space, self.action_dim, c.hidden, c.activation)
        self.mu_target = copy.deepcopy(self.mu).requires_grad_(False)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.mu_optimizer = torch.optim.Adam(self.mu.parameters(), lr=c.learning_rate, fused=True)
        self.q_optimizer = torch.optim.Adam(self.q.parameters(), lr=c.learning_rate, fused=True)
        self.ou_noise = OrnsteinUhlenbeckNoise((c.n_envs, self.action_dim), c.noise_std, c.ou_theta, c.ou_dt)

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        a = self.mu(obs)
        if not deterministic:
            noise = self.rng.normal(0.0, self.config.noise_std, size=a.shape)
            a = (a + torch.as_tensor(noise, dtype=torch.float32)).clamp(-1.0, 1.0)
        return self.scale_up(a).reshape(-1, *self.action_space.shape)

    def behaviour(self) -> np.ndarray:
        """mu(s) + noise (Gaussian or OU), clipped to [-1, 1]."""
        c = self.config
        with torch.inference_mode():
            a = self.mu(self.encode(self.obs)).numpy()
        noise = self.ou_noise(self.rng) if c.noise == "ou" else self.rng.normal(0.0, c.noise_std, size=a.shape)
        return np.clip(a + noise, -1.0, 1.0)

    def observe(self, t: Transition) -> None:
        self.ou_noise.reset(t.terminated | t.truncated)

    def gradient_step(self, obs: torch.Tensor, a: torch.Tensor, r: torch.Tensor, next_obs: torch.Tensor,
                      terminated: torch.Tensor) -> dict[str, float]:
        c = self.config
        with torch.no_grad():
            target = td_target(r, terminated, self.q_target(next_obs, self.mu_target(next_obs)), c.gamma)
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
        return {"critic_loss": q_loss.item(), "actor_loss": mu_loss.item()}
