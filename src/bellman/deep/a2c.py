"""Advantage actor-critic, synchronous (A2C): the batched form of A3C (Mnih et al. 2016, "Asynchronous
Methods for Deep Reinforcement Learning", arXiv:1602.01783; Zhao 2025, "Mathematical Foundations of
Reinforcement Learning", section 10.2); GAE from Schulman et al. 2016, arXiv:1506.02438.

Each iteration steps n_envs environments n_steps times with pi, estimates advantages either as n-step
returns minus v(s) (`advantage="nstep"`: every step bootstraps from the end of the rollout, A3C's form)
or by GAE(gamma, lambda) (`advantage="gae"`), and takes one gradient step on

    L = -E[ln pi(a|s) A] + c_v E[(G - v(s))^2] - c_H H[pi].
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from gymnasium import spaces

from bellman.core.config import field
from bellman.core.returns import gae, n_step_returns, standardize
from bellman.deep.agent import Agent, AgentConfig
from bellman.deep.buffers import RolloutBuffer
from bellman.deep.nets import Policy, ValueNet
from bellman.deep.rollout import collect_rollout


@dataclasses.dataclass
class A2CConfig(AgentConfig):
    """Defaults of Stable-Baselines3 A2C (RMSprop alpha 0.99, eps 1e-5, as in the paper);
    `A2CConfig.for_env("CartPole-v1")` adds the rl-baselines3-zoo setting (8 envs).
    """

    learning_rate: float = 7e-4
    n_steps: int = field(5, "rollout length per env")
    advantage: Literal["nstep", "gae"] = field("gae", "the advantage estimate: n-step returns or GAE")
    gae_lambda: float = field(1.0, "lambda of GAE (advantage='gae')")
    ent_coef: float = field(0.0, "weight of the entropy bonus")
    vf_coef: float = field(0.5, "weight of the value loss")
    max_grad_norm: float | None = field(0.5, "global gradient-norm clipping (None: off)")
    normalize_advantage: bool = field(False, "standardise advantages per rollout")
    optimizer: Literal["rmsprop", "adam"] = field("rmsprop", "the optimiser")
    anneal_lr: bool = field(False, "decay the learning rate linearly to 0")

    presets = {
        # rl-baselines3-zoo hyperparams/a2c.yml, CartPole-v1
        "CartPole-v1": dict(n_envs=8, ent_coef=0.0),
    }

    def check(self) -> None:
        super().check()
        self.require(self.n_steps >= 1, "n_steps", "an int >= 1")
        self.require(0.0 <= self.gae_lambda <= 1.0, "gae_lambda", "a float in [0, 1]")
        self.require(self.ent_coef >= 0, "ent_coef", "a float >= 0")
        self.require(self.vf_coef >= 0, "vf_coef", "a float >= 0")
        self.require(self.max_grad_norm is None or self.max_grad_norm > 0, "max_grad_norm", "None or a float > 0")


class A2C(Agent):
    """A2C for Discrete and Box action spaces."""

    config_class = A2CConfig
    action_spaces = (spaces.Discrete, spaces.Box)
    rollout_modules = ("pi", "v")

    def setup(self) -> None:
        c = self.config
        self.pi = Policy(self.observation_space, self.action_space, c.hidden, c.activation)
        self.v = ValueNet(self.observation_space, c.hidden, c.activation)
        params = [*self.pi.parameters(), *self.v.parameters()]
        if c.optimizer == "rmsprop":
            self.optimizer = torch.optim.RMSprop(params, lr=c.learning_rate, alpha=0.99, eps=1e-5)
        else:
            self.optimizer = torch.optim.Adam(params, lr=c.learning_rate)
        self.buffer = RolloutBuffer.for_spaces(c.n_steps, self.envs.num_envs, self.observation_space, self.action_space)

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.pi.mode(obs) if deterministic else self.pi.sample(obs)[0]

    def sample(self) -> RolloutBuffer:
        collect_rollout(self, self.buffer, lambda s: (*self.pi.sample(s), self.v(s)), self.v)
        return self.buffer

    def update(self, buf: RolloutBuffer) -> dict[str, float]:
        c = self.config
        if c.advantage == "gae":
            advantages = gae(buf.rewards, buf.values, buf.terminated, buf.dones, c.gamma, c.gae_lambda)
            returns = advantages + buf.values[:-1]
        else:
            returns = n_step_returns(buf.rewards, buf.values, buf.terminated, buf.dones, c.gamma, c.n_steps)
            advantages = returns - buf.values[:-1]
        obs, actions = buf.flat(buf.obs), buf.flat(buf.actions)
        advantages, returns = buf.flat(advantages), buf.flat(returns)
        if c.normalize_advantage:
            advantages = standardize(advantages)

        self.anneal_learning_rate(c.anneal_lr)
        log_p, entropy = self.pi.log_prob_entropy(obs, actions)
        policy_loss = -(log_p * advantages).mean()
        value_loss = (self.v(obs) - returns).pow(2).mean()
        entropy = entropy.mean()
        loss = policy_loss + c.vf_coef * value_loss - c.ent_coef * entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if c.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"], c.max_grad_norm)
        self.optimizer.step()
        return {"policy_loss": policy_loss.item(), "value_loss": value_loss.item(), "entropy": entropy.item()}
