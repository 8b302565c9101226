"""Twin delayed deep deterministic policy gradient, TD3 (Fujimoto, van Hoof & Meger 2018, "Addressing Function
Approximation Error in Actor-Critic Methods", ICML, arXiv:1802.09477, algorithm 1).

DDPG (`bellman.deep.ddpg`) with three changes against the overestimation of q:

    clipped double Q (sec. 4.1):   y = r + gamma (1 - terminated) min_{i=1,2} q_i(s', a~; w_i-)
    target policy smoothing (5.3): a~ = clip(mu(s'; theta-) + clip(eps, -c, c), -1, 1),  eps ~ N(0, sigma~^2)
    delayed updates (5.2):         each gradient step fits both critics to y; every `policy_delay`-th step
                                   also ascends q_1(s, mu(s; theta)) and Polyak-averages all target networks

The update order and defaults are those of Stable-Baselines3 TD3 (policy_delay 2, target_policy_noise 0.2,
target_noise_clip 0.5, net_arch [400, 300], Adam 1e-3, the critic loss the sum of both MSEs). Actions are
in [-1, 1] inside the agent (units of the action half-range), so the noises are too.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F

from bellman.core.config import field
from bellman.deep.ddpg import DDPG, DDPGConfig, OrnsteinUhlenbeckNoise
from bellman.deep.nets import TwinCritic, torch_default_init
from bellman.deep.replay_ac import DeterministicActor
from bellman.deep.targets import polyak_update, td_target


@dataclasses.dataclass
class TD3Config(DDPGConfig):
    """Defaults of Stable-Baselines3 TD3, with the paper's exploration noise N(0, 0.1) (Stable-Baselines3 has
    none by default; rl-baselines3-zoo sets 0.1 for most envs). The replay settings are `ReplayConfig`'s,
    the noise settings `DDPGConfig`'s."""

    policy_delay: int = field(2, "critic updates per actor and target update (d of the paper)")
    target_policy_noise: float = field(0.2, "sigma~ of the target policy smoothing noise (action half-ranges)")
    target_noise_clip: float = field(0.5, "c: the smoothing noise is clipped to [-c, c]")

    presets = {}

    def check(self) -> None:
        super().check()
        self.require(self.policy_delay >= 1, "policy_delay", "an int >= 1")
        self.require(self.target_policy_noise >= 0, "target_policy_noise", "a float >= 0")
        self.require(self.target_noise_clip >= 0, "target_noise_clip", "a float >= 0")


def smoothed_target_action(mu_next: torch.Tensor, eps: torch.Tensor, noise_clip: float) -> torch.Tensor:
    """a~ = clip(mu(s'; theta-) + clip(eps, -c, c), -1, 1) (eq. 15 of the paper, actions in [-1, 1])."""
    return (mu_next + eps.clamp(-noise_clip, noise_clip)).clamp(-1.0, 1.0)


def clipped_double_q_target(reward: torch.Tensor, terminated: torch.Tensor, q_next: torch.Tensor,
                            gamma: float) -> torch.Tensor:
    """y = r + gamma (1 - terminated) min(q_1(s', a~), q_2(s', a~)) (eq. 10); q_next is (2, batch)."""
    return td_target(reward, terminated, q_next.min(dim=0).values, gamma)


class TD3(DDPG):
    """TD3 for Box (continuous) action spaces; acts like DDPG (mu(s) plus Gaussian or OU noise)."""

    config_class = TD3Config

    def build(self) -> None:
        c = self.config
        self.mu = torch_default_init(DeterministicActor(self.observation_space, self.action_dim, c.hidden,
                                                        c.activation))
        self.q = TwinCritic(self.observation_space, self.action_dim, c.hidden, c.activation)
        self.mu_target = copy.deepcopy(self.mu).requires_grad_(False)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.mu_optimizer = torch.optim.Adam(self.mu.parameters(), lr=c.learning_rate, fused=True)
        self.q_optimizer = torch.optim.Adam(self.q.parameters(), lr=c.learning_rate, fused=True)
        self.ou_noise = OrnsteinUhlenbeckNoise((c.n_envs, self.action_dim), c.noise_std, c.ou_theta, c.ou_dt)

    def gradient_step(self, obs: torch.Tensor, a: torch.Tensor, r: torch.Tensor, next_obs: torch.Tensor,
                      terminated: torch.Tensor) -> dict[str, float]:
        c = self.config
        with torch.no_grad():
            eps = torch.as_tensor(self.rng.normal(0.0, c.target_policy_noise, size=a.shape), dtype=torch.float32)
            a_next = smoothed_target_action(self.mu_target(next_obs), eps, c.target_noise_clip)
            y = clipped_double_q_target(r, terminated, self.q_target(next_obs, a_next), c.gamma)
        q = self.q(obs, a)
        q_loss = F.mse_loss(q[0], y) + F.mse_loss(q[1], y)
        self.q_optimizer.zero_grad(set_to_none=True)
        q_loss.backward()
        self.q_optimizer.step()
        out = {"critic_loss": q_loss.item()}

        if self.n_updates % c.policy_delay == 0:  # the delayed actor and target updates
            self.q.requires_grad_(False)
            mu_loss = -self.q(obs, self.mu(obs))[0].mean()  # minus q_1(s, mu(s)), the DPG objective
            self.mu_optimizer.zero_grad(set_to_none=True)
            mu_loss.backward()
            self.mu_optimizer.step()
            self.q.requires_grad_(True)
            polyak_update(self.q_target, self.q, c.tau)
            polyak_update(self.mu_target, self.mu, c.tau)
            out["actor_loss"] = mu_loss.item()
        return out
