"""Q actor-critic (QAC), the simplest actor-critic: the critic is Sarsa with function approximation and the
actor follows the policy gradient with q in place of the return (Zhao 2025, "Mathematical Foundations of
Reinforcement Learning", section 10.1; Sutton & Barto 2018, section 13.5).

Every iteration steps n_envs environments once with a ~ pi(.|s; theta), draws a' ~ pi(.|s'; theta) and
updates on the batch:

    critic (Sarsa):  w     <- w + alpha_w [r + gamma q(s', a'; w) - q(s, a; w)] grad_w q(s, a; w)
    actor:           theta <- theta + alpha_theta grad_theta ln pi(a|s; theta) q(s, a; w)

optionally with the baseline v(s) = sum_a pi(a|s) q(s, a) subtracted from q(s, a) in the actor's step
(Sutton & Barto 13.4: any action-independent baseline leaves the expected gradient unchanged).

(no bootstrap after termination; a truncated episode bootstraps from q(s', a')). Discrete actions.
"""

from __future__ import annotations

import dataclasses

import torch
from gymnasium import spaces

from bellman.core.config import field
from bellman.deep.agent import Agent, AgentConfig
from bellman.deep.nets import Policy, QNet
from bellman.deep.rollout import transition_batch
from bellman.deep.targets import td_target


@dataclasses.dataclass
class QACConfig(AgentConfig):
    """QAC settings. There is no published tuning for QAC on Gymnasium tasks: these are A2C-like choices
    (8 envs, Adam) checked on CartPole-v1. The actor learns 10x slower than the critic (two time scales, as
    actor-critic convergence proofs assume): with equal rates pi settles on one action before q can tell the
    actions apart.

    With ``baseline`` the actor's step subtracts v(s) = sum_a pi(a|s) q(s, a) from q(s, a): the expected
    gradient is unchanged (sum_a grad pi(a|s) v(s) = 0) and its variance is lower; False gives the
    textbook update (noisier: in one CartPole-v1 run, seed 0, about 200 after 30k steps against 500 with
    the baseline).
    """

    n_envs: int = 8
    learning_rate: float = field(1e-4, "the actor's step size")
    critic_learning_rate: float = field(1e-3, "the critic's step size")
    baseline: bool = field(True, "subtract v(s) = sum_a pi(a|s) q(s, a) from q(s, a) in the actor's step")
    ent_coef: float = field(0.0, "weight of an entropy bonus on the actor (0: the plain algorithm)")

    def check(self) -> None:
        super().check()
        self.require(self.critic_learning_rate > 0, "critic_learning_rate", "a float > 0")
        self.require(self.ent_coef >= 0, "ent_coef", "a float >= 0")


class QAC(Agent):
    """QAC for Discrete action spaces."""

    config_class = QACConfig
    action_spaces = (spaces.Discrete,)

    def setup(self) -> None:
        c = self.config
        self.pi = Policy(self.observation_space, self.action_space, c.hidden, c.activation)
        self.q = QNet(self.observation_space, int(self.action_space.n), c.hidden, c.activation)
        self.pi_optimizer = torch.optim.Adam(self.pi.parameters(), lr=c.learning_rate)
        self.q_optimizer = torch.optim.Adam(self.q.parameters(), lr=c.critic_learning_rate)

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.pi.mode(obs) if deterministic else self.pi.sample(obs)[0]

    def train_iteration(self) -> dict[str, float]:
        c = self.config
        obs = self.encode(self.obs)
        with torch.no_grad():
            a = self.pi.sample(obs)[0]
        valid, next_obs, r, terminated = transition_batch(self, self.env_step(a.numpy()))
        if not valid.any():
            return {}
        obs, a = obs[valid], a[valid]

        # critic: Sarsa with a' ~ pi(.|s')
        with torch.no_grad():
            a_next = self.pi.sample(next_obs)[0]
            q_next = self.q(next_obs).gather(1, a_next.unsqueeze(1)).squeeze(1)
            target = td_target(r, terminated, q_next, c.gamma)
        q_sa = self.q(obs).gather(1, a.unsqueeze(1)).squeeze(1)
        critic_loss = 0.5 * (target - q_sa).pow(2).mean()
        self.q_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.q_optimizer.step()

        # actor: grad ln pi(a|s) [q(s, a) - v(s)], v(s) = sum_a pi(a|s) q(s, a) when baseline
        log_pi, entropy = self.pi.log_prob_entropy(obs, a)
        with torch.no_grad():
            v_s = (self.pi(obs).probs * self.q(obs)).sum(1) if c.baseline else 0.0
            weight = q_sa.detach() - v_s
        actor_loss = -(log_pi * weight).mean() - c.ent_coef * entropy.mean()
        self.pi_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.pi_optimizer.step()
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(), "q": q_sa.mean().item()}
