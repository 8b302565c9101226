"""Proximal Policy Optimisation with the clipped surrogate (Schulman et al. 2017, arXiv:1707.06347),
with the implementation details of Huang et al. (2022) "The 37 Implementation Details of PPO".

Each iteration collects n_steps x n_envs transitions with pi_old, computes GAE(gamma, lambda) advantages
(Schulman et al. 2016, arXiv:1506.02438, eq. 16) and runs n_epochs passes of minibatch gradient steps on

    L = -E[min(ratio A, clip(ratio, 1 - eps, 1 + eps) A)] + c_v L_v - c_H H[pi],
    ratio = pi(a|s) / pi_old(a|s),

with optional value clipping, advantage normalisation per minibatch, global grad-norm clipping, linear
annealing of the learning rate and of eps, and an optional early stop when the approximate KL exceeds
1.5 target_kl. Discrete (categorical) and continuous (diagonal Gaussian) actions.
"""

from __future__ import annotations

import dataclasses

import torch
from gymnasium import spaces

from bellman.core.config import field
from bellman.core.losses import clipped_surrogate_loss, value_loss
from bellman.core.returns import gae, standardize
from bellman.deep.agent import Agent, AgentConfig
from bellman.deep.buffers import RolloutBuffer
from bellman.deep.nets import ActorCritic
from bellman.deep.rollout import collect_rollout


@dataclasses.dataclass
class PPOConfig(AgentConfig):
    """Defaults of Stable-Baselines3 PPO (those of the paper's MuJoCo runs); `PPOConfig.for_env(id)` adds the
    rl-baselines3-zoo tuned settings for CartPole-v1 (return 500 after 100k steps on seeds 0-4) and
    Pendulum-v1, and `PPOConfig.for_env("CartPole-v1", fast=True)` bellman's own quicker CartPole setting: the
    zoo's with 16 envs x 16 steps (the same 256 samples per iteration in half the vector steps), minibatches
    of 128 and 4 epochs at learning rate 3e-3 instead of one batch of 256 and 20 epochs at 1e-3, i.e. 3,120
    instead of 7,800 gradient steps over 100k samples, in 2.5x less time (4.3 s against 10.8 s a run). Its
    return after 100k steps was 500 on seeds 0-9; over seeds 0-29 it was 500 on all but seed 28 (441).
    Whole-rollout minibatches (batch 256, 3.0 s) ended at 316 on seed 8 (benchmarks/RESULTS.md).
    """

    n_steps: int = field(2048, "rollout length per env")
    batch_size: int = field(64, "minibatch size")
    n_epochs: int = field(10, "passes over each rollout")
    gae_lambda: float = field(0.95, "lambda of GAE")
    clip_range: float = field(0.2, "epsilon of the clipped ratio")
    clip_range_vf: float | None = field(None, "clip v(s) to within this distance of the rollout's value "
                                              "(None: no clipping)")
    ent_coef: float = field(0.0, "weight of the entropy bonus")
    vf_coef: float = field(0.5, "weight of the value loss")
    max_grad_norm: float | None = field(0.5, "global gradient-norm clipping (None: off)")
    normalize_advantage: bool = field(True, "standardise advantages per minibatch")
    anneal_lr: bool = field(False, "decay the learning rate linearly to 0")
    anneal_clip: bool = field(False, "decay clip_range linearly to 0")
    target_kl: float | None = field(None, "stop the epochs of an iteration once the approximate KL exceeds "
                                          "1.5 target_kl (None: never)")
    log_std_init: float = field(0.0, "initial log sigma of Gaussian policies")
    ortho_init: bool = field(True, "orthogonal initialisation (gains sqrt 2, policy head 0.01, value head 1); "
                                   "False: PyTorch's default (Stable-Baselines3's ortho_init)")

    presets = {
        # rl-baselines3-zoo hyperparams/ppo.yml, CartPole-v1 (lin_1e-3 learning rate, lin_0.2 clip range)
        "CartPole-v1": dict(n_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                            ent_coef=0.0, learning_rate=1e-3, clip_range=0.2, anneal_lr=True, anneal_clip=True),
        # rl-baselines3-zoo hyperparams/ppo.yml, Pendulum-v1 (without its gSDE exploration)
        "Pendulum-v1": dict(n_envs=4, n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10, ent_coef=0.0,
                            learning_rate=1e-3, clip_range=0.2),
    }
    # bellman's own: the zoo's CartPole-v1 setting in 3,120 instead of 7,800 gradient steps (500 on seeds 0-9)
    fast_presets = {"CartPole-v1": dict(n_envs=16, n_steps=16, batch_size=128, n_epochs=4, learning_rate=3e-3)}

    def check(self) -> None:
        super().check()
        self.require(self.n_steps >= 1, "n_steps", "an int >= 1")
        self.require(self.batch_size >= 1, "batch_size", "an int >= 1")
        self.require(self.n_epochs >= 1, "n_epochs", "an int >= 1")
        self.require(0.0 <= self.gae_lambda <= 1.0, "gae_lambda", "a float in [0, 1]")
        self.require(self.clip_range > 0, "clip_range", "a float > 0")
        self.require(self.clip_range_vf is None or self.clip_range_vf > 0, "clip_range_vf", "None or a float > 0")
        self.require(self.ent_coef >= 0, "ent_coef", "a float >= 0")
        self.require(self.vf_coef >= 0, "vf_coef", "a float >= 0")
        self.require(self.max_grad_norm is None or self.max_grad_norm > 0, "max_grad_norm", "None or a float > 0")
        self.require(self.target_kl is None or self.target_kl > 0, "target_kl", "None or a float > 0")


def approx_kl(log_ratio: torch.Tensor) -> torch.Tensor:
    """KL(pi_old || pi) estimated from samples of pi_old: E[(ratio - 1) - ln ratio] (Schulman's k3)."""
    return (log_ratio.exp() - 1.0 - log_ratio).mean()


class PPO(Agent):
    """PPO-Clip for Discrete and Box action spaces."""

    config_class = PPOConfig
    action_spaces = (spaces.Discrete, spaces.Box)
    rollout_modules = ("ac",)

    def setup(self) -> None:
        c = self.config
        self.ac = ActorCritic(self.observation_space, self.action_space, c.hidden, c.activation, c.log_std_init,
                              c.ortho_init)
        self.optimizer = torch.optim.Adam(self.ac.parameters(), lr=c.learning_rate, eps=1e-5, fused=True)
        self.buffer = RolloutBuffer.for_spaces(c.n_steps, self.envs.num_envs, self.observation_space, self.action_space)

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.ac.mode(obs) if deterministic else self.ac.sample(obs)[0]

    def sample(self) -> RolloutBuffer:
        collect_rollout(self, self.buffer, self.ac.sample, self.ac.value)
        return self.buffer

    def update(self, buf: RolloutBuffer) -> dict[str, float]:
        c = self.config
        advantages = gae(buf.rewards, buf.values, buf.terminated, buf.dones, c.gamma, c.gae_lambda)
        returns = advantages + buf.values[:-1]
        obs, actions, old_log_p = buf.flat(buf.obs), buf.flat(buf.actions), buf.flat(buf.log_probs)
        old_v, advantages, returns = buf.flat(buf.values[:-1]), buf.flat(advantages), buf.flat(returns)

        lr = self.anneal_learning_rate(c.anneal_lr)
        clip_eps = c.clip_range * (self.progress_remaining if c.anneal_clip else 1.0)
        batch = (obs, actions, old_log_p, old_v, advantages, returns)
        self.optimise(batch, clip_eps)
        with torch.no_grad():  # statistics of the updated policy on the whole rollout
            policy_loss, v_loss, entropy, log_ratio = self.losses(*batch, clip_eps)
            clip_fraction = ((log_ratio.exp() - 1.0).abs() > clip_eps).float().mean()
            stats = torch.stack([policy_loss, v_loss, entropy, approx_kl(log_ratio), clip_fraction]).tolist()
        names = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")
        return {**dict(zip(names, stats)), "learning_rate": lr}

    def optimise(self, batch: tuple[torch.Tensor, ...], clip_eps: float) -> None:
        """n_epochs passes of minibatch steps; stops once the approximate KL exceeds 1.5 target_kl."""
        c = self.config
        params = list(self.ac.parameters())
        for _ in range(c.n_epochs):
            for idx in torch.randperm(len(batch[0])).split(c.batch_size):
                policy_loss, v_loss, entropy, log_ratio = self.losses(*(x[idx] for x in batch), clip_eps)
                if c.target_kl is not None and approx_kl(log_ratio).item() > 1.5 * c.target_kl:
                    return
                loss = policy_loss + c.vf_coef * v_loss
                if c.ent_coef > 0:  # with a zero weight the entropy needs no backward pass
                    loss = loss - c.ent_coef * entropy
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if c.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm, foreach=True)
                self.optimizer.step()

    def losses(self, obs: torch.Tensor, actions: torch.Tensor, old_log_p: torch.Tensor, old_v: torch.Tensor,
               advantages: torch.Tensor, returns: torch.Tensor, clip_eps: float
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Clipped surrogate, value loss, mean entropy and ln(pi / pi_old) on a (mini)batch."""
        c = self.config
        log_p, entropy, v = self.ac.log_prob_entropy_value(obs, actions)
        log_ratio = log_p - old_log_p
        if c.normalize_advantage:
            advantages = standardize(advantages)
        policy_loss, _ = clipped_surrogate_loss(log_ratio.exp(), advantages, clip_eps)
        v_loss, _ = value_loss(v, old_v, returns, c.clip_range_vf)
        return policy_loss, v_loss, entropy.mean(), log_ratio
