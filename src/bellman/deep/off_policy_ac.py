"""Off-policy actor-critic with importance sampling (Degris, White & Sutton 2012, "Off-Policy Actor-Critic",
arXiv:1205.4839; Zhao 2025, "Mathematical Foundations of Reinforcement Learning", section 10.3).

A behaviour policy beta generates the data; pi is learned from it. With the importance weight
rho = pi(a|s; theta) / beta(a|s) and the TD error delta = r + gamma v(s'; w) - v(s; w):

    critic:  w     <- w + alpha_w rho delta grad_w v(s; w)
    actor:   theta <- theta + alpha_theta rho delta grad_theta ln pi(a|s; theta)

Here beta(.|s) = (1 - behavior_eps) pi(.|s) + behavior_eps / |A| at the time of acting (behavior_eps = 1 is
the uniform random policy, 0 is on-policy with rho = 1). n_envs environments give one batch per step.
Discrete actions.
"""

from __future__ import annotations

import dataclasses

import torch
from gymnasium import spaces

from bellman.core.config import field
from bellman.deep.agent import Agent, AgentConfig
from bellman.deep.nets import Policy, ValueNet
from bellman.deep.rollout import transition_batch
from bellman.deep.targets import td_target


@dataclasses.dataclass
class OffPolicyACConfig(AgentConfig):
    """Off-policy actor-critic settings. No published tuning exists for Gymnasium tasks: these are A2C-like
    choices (8 envs, Adam) checked on CartPole-v1.
    """

    n_envs: int = 8
    learning_rate: float = field(1e-3, "the actor's step size")
    critic_learning_rate: float = field(1e-3, "the critic's step size")
    behavior_eps: float = field(0.5, "weight of the uniform policy in the behaviour policy beta")

    def check(self) -> None:
        super().check()
        self.require(self.critic_learning_rate > 0, "critic_learning_rate", "a float > 0")
        self.require(0.0 <= self.behavior_eps <= 1.0, "behavior_eps", "a float in [0, 1]")


def behavior_probs(pi_probs: torch.Tensor, eps: float) -> torch.Tensor:
    """beta(.|s) = (1 - eps) pi(.|s) + eps / |A| for a batch of action distributions (batch, |A|)."""
    return (1.0 - eps) * pi_probs + eps / pi_probs.shape[-1]


def importance_weights(log_pi: torch.Tensor, log_beta: torch.Tensor) -> torch.Tensor:
    """rho = pi(a|s) / beta(a|s), computed from log-probabilities."""
    return (log_pi - log_beta).exp()


class OffPolicyAC(Agent):
    """Off-policy actor-critic for Discrete action spaces."""

    config_class = OffPolicyACConfig
    action_spaces = (spaces.Discrete,)

    def setup(self) -> None:
        c = self.config
        self.pi = Policy(self.observation_space, self.action_space, c.hidden, c.activation)
        self.v = ValueNet(self.observation_space, c.hidden, c.activation)
        self.pi_optimizer = torch.optim.Adam(self.pi.parameters(), lr=c.learning_rate)
        self.v_optimizer = torch.optim.Adam(self.v.parameters(), lr=c.critic_learning_rate)

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.pi.mode(obs) if deterministic else self.pi.sample(obs)[0]

    def train_iteration(self) -> dict[str, float]:
        c = self.config
        obs = self.encode(self.obs)
        with torch.no_grad():
            beta = behavior_probs(self.pi(obs).probs, c.behavior_eps)
            a = torch.multinomial(beta, 1).squeeze(1)
            log_beta = beta.gather(1, a.unsqueeze(1)).squeeze(1).log()
        valid, next_obs, r, terminated = transition_batch(self, self.env_step(a.numpy()))
        if not valid.any():
            return {}
        obs, a, log_beta = obs[valid], a[valid], log_beta[valid]

        log_pi, _ = self.pi.log_prob_entropy(obs, a)
        rho = importance_weights(log_pi.detach(), log_beta)
        v_s = self.v(obs)
        with torch.no_grad():
            target = td_target(r, terminated, self.v(next_obs), c.gamma)
        delta = target - v_s

        critic_loss = 0.5 * (rho * delta.pow(2)).mean()  # gradient: -rho delta grad v(s)
        self.v_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.v_optimizer.step()

        actor_loss = -(rho * delta.detach() * log_pi).mean()
        self.pi_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.pi_optimizer.step()
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(), "rho": rho.mean().item()}
