"""Trust Region Policy Optimisation (Schulman et al. 2015, arXiv:1502.05477: the average-KL problem of
section 4, solved as in appendix C), with GAE advantages (Schulman et al. 2016, arXiv:1506.02438).

Each iteration collects a rollout, computes GAE advantages and solves

    maximise L(theta) = E[pi_theta(a|s) / pi_old(a|s) A]   subject to   E[KL(pi_old || pi_theta)] <= delta

approximately: the natural-gradient direction x = F^-1 g by conjugate gradient on Fisher-vector products
F v = grad (grad KL . v) (+ damping v), the step scaled to the bound, beta = sqrt(2 delta / x^T F x), and
a backtracking line search theta_old + shrink^i beta x that accepts the first candidate whose surrogate
improves and whose KL is within delta. The critic v(s) is fitted by n_critic_updates epochs of Adam.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from gymnasium import spaces
from torch.distributions import kl_divergence
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from bellman.core.config import field
from bellman.core.returns import gae, standardize
from bellman.deep.agent import Agent, AgentConfig
from bellman.deep.buffers import RolloutBuffer
from bellman.deep.nets import Policy, ValueNet
from bellman.deep.rollout import collect_rollout


@dataclasses.dataclass
class TRPOConfig(AgentConfig):
    """Defaults of sb3-contrib TRPO; `TRPOConfig.for_env("CartPole-v1")` adds rl-baselines3-zoo's setting."""

    learning_rate: float = field(1e-3, "the critic's Adam step size")
    n_steps: int = field(2048, "rollout length per env")
    batch_size: int = field(128, "critic minibatch size")
    n_critic_updates: int = field(10, "critic epochs per rollout")
    gae_lambda: float = field(0.95, "lambda of GAE")
    target_kl: float = field(0.01, "delta, the KL bound of the policy step")
    cg_max_steps: int = field(15, "conjugate-gradient iterations")
    cg_damping: float = field(0.1, "damping added to the Fisher matrix")
    line_search_shrink: float = field(0.8, "backtracking factor of the line search")
    line_search_max_iter: int = field(10, "tries of the line search")
    normalize_advantage: bool = field(True, "standardise advantages per rollout")

    presets = {
        # rl-baselines3-zoo hyperparams/trpo.yml, CartPole-v1
        "CartPole-v1": dict(n_envs=2, n_steps=512, batch_size=512, gae_lambda=0.98, gamma=0.99,
                            n_critic_updates=20, cg_max_steps=20, learning_rate=1e-3),
    }

    def check(self) -> None:
        super().check()
        self.require(self.n_steps >= 1, "n_steps", "an int >= 1")
        self.require(self.batch_size >= 1, "batch_size", "an int >= 1")
        self.require(self.n_critic_updates >= 0, "n_critic_updates", "an int >= 0")
        self.require(0.0 <= self.gae_lambda <= 1.0, "gae_lambda", "a float in [0, 1]")
        self.require(self.target_kl > 0, "target_kl", "a float > 0")
        self.require(self.cg_max_steps >= 1, "cg_max_steps", "an int >= 1")
        self.require(self.cg_damping >= 0, "cg_damping", "a float >= 0")
        self.require(0.0 < self.line_search_shrink < 1.0, "line_search_shrink", "a float in (0, 1)")
        self.require(self.line_search_max_iter >= 1, "line_search_max_iter", "an int >= 1")


def conjugate_gradient(fvp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, n_iters: int,
                       tol: float = 1e-10) -> torch.Tensor:
    """Solve F x = b for symmetric positive-definite F given only products F v (Nocedal & Wright, alg. 5.2)."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r @ r
    for _ in range(n_iters):
        fp = fvp(p)
        alpha = rr / (p @ fp)
        x += alpha * p
        r -= alpha * fp
        rr_new = r @ r
        if rr_new < tol:
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


class TRPO(Agent):
    """TRPO for Discrete and Box action spaces."""

    config_class = TRPOConfig
    action_spaces = (spaces.Discrete, spaces.Box)

    def setup(self) -> None:
        c = self.config
        self.pi = Policy(self.observation_space, self.action_space, c.hidden, c.activation)
        self.v = ValueNet(self.observation_space, c.hidden, c.activation)
        self.v_optimizer = torch.optim.Adam(self.v.parameters(), lr=c.learning_rate)
        self.buffer = RolloutBuffer.for_spaces(c.n_steps, c.n_envs, self.observation_space, self.action_space)

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.pi.mode(obs) if deterministic else self.pi.sample(obs)[0]

    def policy_step(self, obs: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor,
                    old_log_p: torch.Tensor) -> dict[str, float]:
        """One trust-region step of pi on a batch; returns the surrogate gain, the KL and line-search tries."""
        c = self.config
        params = list(self.pi.parameters())
        with torch.no_grad():
            old_dist = self.pi(obs)

        def surrogate() -> torch.Tensor:
            log_p, _ = self.pi.log_prob_entropy(obs, actions)
            return (torch.exp(log_p - old_log_p) * advantages).mean()

        def mean_kl() -> torch.Tensor:
            return kl_divergence(old_dist, self.pi(obs)).mean()

        loss = surrogate()
        g = parameters_to_vector(torch.autograd.grad(loss, params))
        grad_kl = parameters_to_vector(torch.autograd.grad(mean_kl(), params, create_graph=True))

        def fvp(vec: torch.Tensor) -> torch.Tensor:
            hvp = torch.autograd.grad(grad_kl @ vec, params, retain_graph=True)
            return parameters_to_vector(hvp) + c.cg_damping * vec

        x = conjugate_gradient(fvp, g, c.cg_max_steps)
        beta = torch.sqrt(2.0 * c.target_kl / (x @ fvp(x)).clamp_min(1e-12))
        theta_old = parameters_to_vector(params).detach()
        with torch.no_grad():
            for i in range(c.line_search_max_iter):
                vector_to_parameters(theta_old + c.line_search_shrink ** i * beta * x, params)
                gain, kl = surrogate() - loss, mean_kl()
                if kl <= c.target_kl and gain > 0:
                    return {"surrogate_gain": gain.item(), "kl": kl.item(), "line_search_tries": i + 1.0}
            vector_to_parameters(theta_old, params)
        return {"surrogate_gain": 0.0, "kl": 0.0, "line_search_tries": float(c.line_search_max_iter)}

    def train_iteration(self) -> dict[str, float]:
        c, buf = self.config, self.buffer
        collect_rollout(self, buf, lambda s: (*self.pi.sample(s), self.v(s)), self.v)
        advantages = gae(buf.rewards, buf.values, buf.terminated, buf.dones, c.gamma, c.gae_lambda)
        returns = advantages + buf.values[:-1]
        obs, actions, old_log_p = buf.flat(buf.obs), buf.flat(buf.actions), buf.flat(buf.log_probs)
        advantages, returns = buf.flat(advantages), buf.flat(returns)
        if c.normalize_advantage:
            advantages = standardize(advantages)
        metrics = self.policy_step(obs, actions, advantages, old_log_p)

        value_loss = torch.zeros(())
        for _ in range(c.n_critic_updates):
            for idx in torch.randperm(len(obs)).split(c.batch_size):
                value_loss = (self.v(obs[idx]) - returns[idx]).pow(2).mean()
                self.v_optimizer.zero_grad(set_to_none=True)
                value_loss.backward()
                self.v_optimizer.step()
        return {**metrics, "value_loss": value_loss.item()}
