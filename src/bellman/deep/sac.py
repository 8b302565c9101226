"""Soft actor-critic, SAC (Haarnoja et al. 2018, "Soft Actor-Critic: Off-Policy Maximum Entropy Deep RL with
a Stochastic Actor", ICML, arXiv:1801.01290; with the learned temperature of Haarnoja et al. 2018, "Soft
Actor-Critic Algorithms and Applications", arXiv:1812.05905, sec. 5, and the twin critics of TD3).

The policy maximises E[sum_t gamma^t (r_t + alpha H(pi(.|s_t)))]. The actor is a squashed Gaussian: u ~ N(m(s),
diag sigma(s)^2), a = tanh(u), so (appendix C of arXiv:1801.01290)

    ln pi(a|s) = ln N(u; m(s), sigma(s)^2) - sum_j ln(1 - tanh(u_j)^2)

Each gradient step on a minibatch (s, a, r, s', terminated), with a_pi ~ pi(.|s), a' ~ pi(.|s'):

    temperature:  minimise J(alpha) = E[-ln alpha (ln pi(a_pi|s) + H_target)]   (eq. 18; in ln alpha)
    critics:      minimise 1/2 sum_i E[(q_i(s, a) - y)^2],
                  y = r + gamma (1 - terminated) (min_i q_i(s', a'; w_i-) - alpha ln pi(a'|s'))
    actor:        minimise E[alpha ln pi(a_pi|s) - min_i q_i(s, a_pi)]   (reparameterised, eq. 17)
    targets:      w_i- <- tau w_i + (1 - tau) w_i-  every target_update_interval gradient steps (counted over the run)

The order, the defaults and the details are Stable-Baselines3's: H_target = -dim(A), ln alpha starts at
ln 1 (or ln X for ent_coef 'auto_X') and the temperature step comes first, with alpha of the previous
step used in that step's losses; ln sigma clamped to [-20, 2]; 1e-6 inside the log of the tanh correction;
net_arch [256, 256], Adam 3e-4 for all three parts.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from bellman.core.config import field
from bellman.deep.agent import ReplayConfig
from bellman.deep.nets import TwinCritic, activation_class, mlp, obs_dim, torch_default_init
from bellman.deep.replay_ac import ReplayActorCritic
from bellman.deep.targets import polyak_update, td_target

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclasses.dataclass
class SACConfig(ReplayConfig):
    """Defaults of Stable-Baselines3 SAC (those of the paper: Adam 3e-4, batch 256, tau 0.005, ReLU
    [256, 256]). The replay settings are `ReplayConfig`'s."""

    hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    ent_coef: str = field("auto", "the temperature alpha: 'auto' (learned from 1), 'auto_X' (learned from X) or "
                                  "a fixed number given as text ('0.1')")
    target_entropy: float | None = field(None, "H_target of the learned temperature (None: -dim(A))")
    target_update_interval: int = field(1, "gradient steps between target-network updates")

    def check(self) -> None:
        super().check()
        self.require(_parse_ent_coef(self.ent_coef) is not None, "ent_coef",
                     "'auto', 'auto_X' with X > 0, or a number >= 0")
        self.require(self.target_update_interval >= 1, "target_update_interval", "an int >= 1")

    @property
    def learned_temperature(self) -> bool:
        return self.ent_coef.startswith("auto")

    @property
    def initial_alpha(self) -> float:
        return _parse_ent_coef(self.ent_coef)


def _parse_ent_coef(text: str) -> float | None:
    """alpha's (initial) value from ent_coef's text, None if it is malformed."""
    value = text[len("auto_"):] if text.startswith("auto_") else "1.0" if text == "auto" else text
    try:
        alpha = float(value)
    except ValueError:
        return None
    ok = alpha > 0 if text.startswith("auto") else alpha >= 0
    return alpha if ok and math.isfinite(alpha) else None


def squashed_gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """ln pi(tanh(u)|s) = sum_j [ln N(u_j; m_j, sigma_j^2) - ln(1 - tanh(u_j)^2 + 1e-6)] (appendix C)."""
    gaussian = -0.5 * ((u - mean) / log_std.exp()).pow(2) - log_std - _HALF_LOG_2PI
    return (gaussian - torch.log(1.0 - torch.tanh(u).pow(2) + 1e-6)).sum(-1)


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """J(ln alpha) = -E[ln alpha (ln pi(a|s) + H_target)], the log-probabilities held fixed (eq. 18 in ln alpha:
    its gradient raises alpha while the entropy -E[ln pi] is below H_target)."""
    return -(log_alpha * (log_prob + target_entropy).detach()).mean()


def soft_q_target(reward: torch.Tensor, terminated: torch.Tensor, q_next: torch.Tensor, log_prob_next: torch.Tensor,
                  alpha: torch.Tensor | float, gamma: float) -> torch.Tensor:
    """y = r + gamma (1 - terminated) (min_i q_i(s', a') - alpha ln pi(a'|s')); q_next is (2, batch)."""
    return td_target(reward, terminated, q_next.min(dim=0).values - alpha * log_prob_next, gamma)


class SquashedGaussianActor(nn.Module):
    """pi(.|s): an MLP body to the mean m(s) and ln sigma(s) (clamped to [LOG_STD_MIN, LOG_STD_MAX]) of u,
    a = tanh(u) in [-1, 1]^d; PyTorch's default initialisation (Stable-Baselines3's)."""

    def __init__(self, observation_space: spaces.Space, action_dim: int, hidden: tuple[int, ...], activation: str):
        super().__init__()
        body = mlp(obs_dim(observation_space), hidden[:-1], hidden[-1], activation)
        self.body = torch_default_init(nn.Sequential(*body, activation_class(activation)()))
        self.mean = nn.Linear(hidden[-1], action_dim)
        self.log_std = nn.Linear(hidden[-1], action_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """m(s) and ln sigma(s)."""
        h = self.body(obs)
        return self.mean(h), self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a = tanh(m + sigma eps), eps ~ N(0, I) (reparameterised), and ln pi(a|s)."""
        mean, log_std = self(obs)
        u = mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(u), squashed_gaussian_log_prob(u, mean, log_std)

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self(obs)[0])


class Temperature(nn.Module):
    """ln alpha, the learned entropy temperature (optimised in the log, as Stable-Baselines3 does)."""

    def __init__(self, alpha: float):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor([math.log(alpha)]))


class SAC(ReplayActorCritic):
    """SAC for Box (continuous) action spaces (the loop: `bellman.deep.replay_ac`)."""

    config_class = SACConfig

    def build(self) -> None:
        c = self.config
        self.pi = SquashedGaussianActor(self.observation_space, self.action_dim, c.hidden, c.activation)
        self.q = TwinCritic(self.observation_space, self.action_dim, c.hidden, c.activation)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.pi_optimizer = torch.optim.Adam(self.pi.parameters(), lr=c.learning_rate, fused=True)
        self.q_optimizer = torch.optim.Adam(self.q.parameters(), lr=c.learning_rate, fused=True)
        self.target_entropy = -float(self.action_dim) if c.target_entropy is None else c.target_entropy
        if c.learned_temperature:
            self.temperature = Temperature(c.initial_alpha)
            self.alpha_optimizer = torch.optim.Adam(self.temperature.parameters(), lr=c.learning_rate)

    @property
    def alpha(self) -> torch.Tensor:
        """The current temperature (fixed, or exp(ln alpha) without its gradient)."""
        if self.config.learned_temperature:
            return self.temperature.log_alpha.detach().exp()
        return torch.tensor([self.config.initial_alpha])

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        a = self.pi.mode(obs) if deterministic else self.pi.sample(obs)[0]
        return self.scale_up(a).reshape(-1, *self.action_space.shape)

    def behaviour(self) -> np.ndarray:
        """a ~ pi(.|s)."""
        with torch.inference_mode():
            return self.pi.sample(self.encode(self.obs))[0].numpy()

    def gradient_step(self, obs: torch.Tensor, a: torch.Tensor, r: torch.Tensor, next_obs: torch.Tensor,
                      terminated: torch.Tensor) -> dict[str, float]:
        c = self.config
        a_pi, log_pi = self.pi.sample(obs)
        alpha = self.alpha  # this step's losses use alpha before its own update
        out = {"alpha": alpha.item()}
        if c.learned_temperature:
            alpha_loss = temperature_loss(self.temperature.log_alpha, log_pi, self.target_entropy)
            self.alpha_optimizer.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_optimizer.step()
            out["alpha_loss"] = alpha_loss.item()

        with torch.no_grad():
            a_next, log_pi_next = self.pi.sample(next_obs)
            y = soft_q_target(r, terminated, self.q_target(next_obs, a_next), log_pi_next, alpha, c.gamma)
        q = self.q(obs, a)
        q_loss = 0.5 * (F.mse_loss(q[0], y) + F.mse_loss(q[1], y))
        self.q_optimizer.zero_grad(set_to_none=True)
        q_loss.backward()
        self.q_optimizer.step()

        self.q.requires_grad_(False)  # the actor's step differentiates through q but changes only theta
        pi_loss = (alpha * log_pi - self.q(obs, a_pi).min(dim=0).values).mean()
        self.pi_optimizer.zero_grad(set_to_none=True)
        pi_loss.backward()
        self.pi_optimizer.step()
        self.q.requires_grad_(True)

        if self.n_updates % c.target_update_interval == 0:
            polyak_update(self.q_target, self.q, c.tau)
        return {**out, "critic_loss": q_loss.item(), "actor_loss": pi_loss.item(), "entropy": -log_pi.mean().item()}
