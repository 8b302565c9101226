"""REINFORCE: Monte Carlo policy gradient (Williams 1992, "Simple statistical gradient-following algorithms
for connectionist reinforcement learning", Machine Learning 8; Sutton & Barto 2018, sections 13.3-13.4;
Zhao 2025, "Mathematical Foundations of Reinforcement Learning", section 9.4).

Each iteration starts a fresh episode in each of the n_envs copies, runs pi until every copy has finished
its episode, computes the returns g_t = r_{t+1} + gamma g_{t+1} backwards and ascends

    grad J = E[grad ln pi(a_t|s_t) (g_t - b(s_t))],

with b = 0 (`baseline=False`) or a learned state value v(s) fitted to g_t (`baseline=True`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from gymnasium import spaces

from bellman.core.config import field
from bellman.core.returns import discounted_returns, standardize
from bellman.deep.agent import Agent, AgentConfig
from bellman.deep.nets import Policy, ValueNet


@dataclasses.dataclass
class REINFORCEConfig(AgentConfig):
    """gamma 0.99, Adam, standardised returns as in the PyTorch reference example
    (pytorch/examples, reinforcement_learning/reinforce.py: one episode per update, learning rate 1e-2);
    here 8 episodes per update at 1e-3, which is steadier on CartPole.
    """

    n_envs: int = field(8, "episodes per update")
    learning_rate: float = 1e-3
    baseline: bool = field(True, "subtract a learned v(s) fitted to g_t")
    normalize_returns: bool = field(True, "standardise g_t - b over the batch")
    vf_learning_rate: float = field(1e-3, "the baseline's step size")
    max_grad_norm: float | None = field(None, "global gradient-norm clipping of the policy (None: off)")

    def check(self) -> None:
        super().check()
        self.require(self.vf_learning_rate > 0, "vf_learning_rate", "a float > 0")
        self.require(self.max_grad_norm is None or self.max_grad_norm > 0, "max_grad_norm", "None or a float > 0")


def reinforce_loss(log_probs: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """-E[ln pi(a|s) (g - b)]: its gradient is minus the REINFORCE estimate of grad J."""
    return -(log_probs * advantages.detach()).mean()


class REINFORCE(Agent):
    """REINFORCE with or without a baseline, for Discrete and Box action spaces."""

    config_class = REINFORCEConfig
    action_spaces = (spaces.Discrete, spaces.Box)

    def setup(self) -> None:
        c = self.config
        self.pi = Policy(self.observation_space, self.action_space, c.hidden, c.activation)
        self.optimizer = torch.optim.Adam(self.pi.parameters(), lr=c.learning_rate)
        if c.baseline:
            self.v = ValueNet(self.observation_space, c.hidden, c.activation)
            self.v_optimizer = torch.optim.Adam(self.v.parameters(), lr=c.vf_learning_rate)

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.pi.mode(obs) if deterministic else self.pi.sample(obs)[0]

    def collect_episodes(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One complete episode per env copy: (obs, actions, rewards, dones) as (T, n_envs, ...) tensors
        and the mask of the steps that belong to each copy's episode."""
        self.reset_envs()
        running = np.ones(self.envs.num_envs, dtype=bool)
        obs, actions, rewards, dones, mask = [], [], [], [], []
        with torch.inference_mode():
            while running.any():
                s = self.encode(self.obs)
                a, _ = self.pi.sample(s)
                step = self.env_step(a.numpy(), active=running)
                done = step.terminated | step.truncated
                obs.append(s)
                actions.append(a)
                rewards.append(torch.as_tensor(np.asarray(step.reward, dtype=np.float32)))
                dones.append(torch.as_tensor(done))
                mask.append(torch.as_tensor(step.valid))
                running &= ~done
        return (torch.stack(obs), torch.stack(actions), torch.stack(rewards), torch.stack(dones),
                torch.stack(mask))

    def train_iteration(self) -> dict[str, float]:
        c = self.config
        obs, actions, rewards, dones, mask = self.collect_episodes()
        g = torch.from_numpy(discounted_returns(rewards.numpy(), c.gamma, dones.numpy()))[mask]
        obs, actions = obs[mask], actions[mask]
        metrics: dict[str, float] = {}
        advantages = g
        if c.baseline:
            v = self.v(obs)
            value_loss = (v - g).pow(2).mean()
            self.v_optimizer.zero_grad(set_to_none=True)
            value_loss.backward()
            self.v_optimizer.step()
            advantages = g - v.detach()
            metrics["value_loss"] = value_loss.item()
        if c.normalize_returns:
            advantages = standardize(advantages)
        log_p, entropy = self.pi.log_prob_entropy(obs, actions)
        loss = reinforce_loss(log_p, advantages)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if c.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.pi.parameters(), c.max_grad_norm)
        self.optimizer.step()
        return {"policy_loss": loss.item(), **metrics, "entropy": entropy.mean().item()}
