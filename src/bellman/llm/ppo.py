"""PPO for RLHF with the PPO-max stabilisers: a policy, a critic, a frozen reference and a reward model.

One iteration (Ouyang et al. 2022, "Training language models to follow instructions with human
feedback", sec. 3.5; Zheng et al. 2023, "Secrets of RLHF in Large Language Models Part I: PPO", sec. 5):

    sample completions y ~ pi(.|x); score s = r_phi(x, y) with the reward model
    s <- clip((s - mean) / std, -reward_clip, reward_clip)           running moments (reward normalisation)
    r_t = -kl_coef (log pi(y_t) - log pi_ref(y_t))  (+ s at the last completion token)
    delta_t = r_t + gamma V(t+1) - V(t);  A_t = delta_t + gamma lam A_{t+1};  R_t = A_t + V(t)   (GAE)
    A <- (A - mean A) / std A                                           (advantage normalisation)
    for ppo_epochs, minibatches:
        L_pi = mean max(-A ratio, -A clip(ratio, 1 - eps, 1 + eps))     ratio = pi / pi_old
        L_V  = 1/2 mean max((V - R)^2, (V_old + clip(V - V_old, -eps_v, eps_v) - R)^2)   (value clipping)
        L    = L_pi + vf_coef L_V (+ ptx_coef L_pretrain)               then global grad-norm clipping

Only completion tokens carry rewards, values, advantages and loss. The critic is initialised from the
reward model, as in InstructGPT.

Usage::

    from bellman.llm import PPOConfig, PPOTrainer, RewardModel, load_model
    from bellman.llm.tasks import arithmetic
    model, tok = load_model("runs/sft/model")
    rm = RewardModel.from_pretrained("runs/rm/model")            # trained with RewardModelTrainer
    PPOTrainer(model, tok, arithmetic(), PPOConfig(out="runs/ppo", learning_rate=1e-4), rm).train()
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bellman.llm.batching import completion_outputs
from bellman.llm.reference import frozen_reference, reference_logprobs
from bellman.llm.reward_model import RewardModel
from bellman.llm.rollout import SamplingConfig
from bellman.llm.sft import sft_loss
from bellman.llm.tasks import RewardFn, Task, call_reward, columns
from bellman.llm.trainer import Trainer, TrainerConfig, plain_prompt


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over the positions where mask is 1."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked positions (population std); zero outside the mask."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def _check_bt(name: str, x: torch.Tensor, mask: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.shape != mask.shape or x.dim() != 2:
        raise ValueError(f"{name} must have the (B, T) shape of the completion mask {tuple(mask.shape)}, "
                         f"got {tuple(x.shape)}")


def kl_penalised_rewards(scores: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor,
                         mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-token rewards r_t = -kl_coef (logp_t - ref_logp_t), plus the sequence score at its last token.

    scores (B,), logp / ref_logp / mask (B, T) over completion positions; every row needs a completion token.
    """
    for name, x in (("logp", logp), ("ref_logp", ref_logp)):
        _check_bt(name, x, mask)
    if scores.shape != mask.shape[:1]:
        raise ValueError(f"scores must have shape ({mask.shape[0]},), got {tuple(scores.shape)}")
    if kl_coef < 0:
        raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
    if (mask.sum(1) == 0).any():
        raise ValueError("every sequence needs at least one completion token in mask")
    rewards = -kl_coef * (logp - ref_logp) * mask
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = (positions * mask.long()).argmax(1)
    rewards[torch.arange(mask.shape[0]), last] += scores
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over completion tokens (Schulman et al. 2016, eq. 16).

    delta_t = r_t + gamma V(t+1) - V(t), A_t = delta_t + gamma lam A_{t+1}, where V and A past the last
    completion token are 0 (the sequence ends). Returns (advantages, returns = A + V), both zero off-mask.
    """
    _check_bt("rewards", rewards, mask)
    _check_bt("values", values, mask)
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma and lam must lie in [0, 1], got gamma={gamma}, lam={lam}")
    mask = mask.to(values.dtype)
    advantages = torch.zeros_like(values)
    a_next = torch.zeros_like(values[:, 0])
    v_next = torch.zeros_like(values[:, 0])
    m_next = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * v_next * m_next - values[:, t]
        a_next = (delta + gamma * lam * a_next * m_next) * mask[:, t]
        advantages[:, t] = a_next
        v_next, m_next = values[:, t], mask[:, t]
    returns = (advantages + values) * mask
    return advantages, returns


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip_range: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped surrogate mean max(-A ratio, -A clip(ratio, 1-eps, 1+eps)); returns (loss, clip fraction)."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).to(logp.dtype), mask)


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip_range: float | None = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """1/2 mean max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2); None turns clipping off.

    Returns (loss, fraction of tokens where the clipped term was the larger).
    """
    _check_bt("values", values, mask)
    unclipped = (values - returns) ** 2
    if clip_range is None:
        return 0.5 * masked_mean(unclipped, mask), torch.zeros((), dtype=values.dtype)
    v_clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    clipped = (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).to(values.dtype), mask)


class RunningMoments:
    """Running mean and std of all rewards seen so far (Chan et al. parallel update), for normalisation."""

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 0

    def update(self, x: torch.Tensor) -> None:
        """Fold a batch of values into the running mean and (population) variance."""
        if x.numel() == 0:
            raise ValueError("RunningMoments.update needs a non-empty batch")
        x = x.detach().double()
        n, batch_mean = x.numel(), x.mean().item()
        batch_var = x.var(unbiased=False).item()
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta ** 2 * self.count * n / total
        self.mean, self.var, self.count = self.mean + delta * n / total, m2 / total, total

    @property
    def std(self) -> float:
        return self.var ** 0.5

    def normalise(self, x: torch.Tensor, clip: float | None, eps: float = 1e-8) -> torch.Tensor:
        """clip((x - mean) / std, -clip, clip) with the current moments (no clipping when clip is None)."""
        z = (x - self.mean) / (self.std + eps)
        return z if clip is None else z.clamp(-clip, clip)

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.var, self.count = float(state["mean"]), float(state["var"]), int(state["count"])


@dataclass
class PPOConfig(TrainerConfig):
    """RLHF PPO settings. Defaults: TRL's PPOConfig (learning_rate 3e-6, num_ppo_epochs 4, kl_coef 0.05,
    cliprange 0.2, cliprange_value 0.2, vf_coef 0.1, gamma 1.0, lam 0.95, temperature 0.7, response length
    53); reward clip 10 from MOSS-RLHF's PPO-max (Zheng et al. 2023); ptx_coef 0 (InstructGPT's PPO-ptx
    uses 27.8 on its pretraining mix); max_grad_norm 1.0. The tiny built-in model wants lr ~1e-4."""

    learning_rate: float = 3e-6
    critic_learning_rate: float | None = None      # None: the policy's learning rate
    batch_size: int = 64                            # prompts (one completion each) per rollout
    num_ppo_epochs: int = 4
    num_mini_batches: int = 1
    kl_coef: float = 0.05
    clip_range: float = 0.2
    clip_range_value: float | None = 0.2           # None switches value clipping off
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    normalise_rewards: bool = True
    reward_clip: float | None = 10.0
    normalise_advantages: bool = True
    ptx_coef: float = 0.0
    temperature: float = 0.7
    max_new_tokens: int = 53

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.critic_learning_rate is not None and not self.critic_learning_rate > 0:
            raise ValueError(f"critic_learning_rate must be > 0 or None, got {self.critic_learning_rate}")
        if self.batch_size < 1 or self.num_ppo_epochs < 1 or self.max_new_tokens < 1:
            raise ValueError("batch_size, num_ppo_epochs and max_new_tokens must be >= 1")
        if not 1 <= self.num_mini_batches <= self.batch_size or self.batch_size % self.num_mini_batches:
            raise ValueError(f"num_mini_batches ({self.num_mini_batches}) must divide batch_size ({self.batch_size})")
        if self.kl_coef < 0 or self.vf_coef < 0 or self.ptx_coef < 0:
            raise ValueError("kl_coef, vf_coef and ptx_coef must be >= 0")
        if not 0 < self.clip_range < 1 or (self.clip_range_value is not None and not self.clip_range_value > 0):
            raise ValueError(f"clip_range must be in (0, 1) and clip_range_value > 0 or None, got "
                             f"{self.clip_range}, {self.clip_range_value}")
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ValueError(f"gamma and lam must lie in [0, 1], got {self.gamma}, {self.lam}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.reward_clip is not None and not self.reward_clip > 0:
            raise ValueError(f"reward_clip must be > 0 or None, got {self.reward_clip}")


class PPOTrainer(Trainer):
    """PPO-max RLHF: the policy and a critic trained against a frozen reward model and a frozen reference.

    Only the reward model's score is optimised; the task's accuracy is logged on the samples and measured
    on the held-out split (eval.json). ``ptx_pairs`` ({"prompt", "completion"}, default: the task's
    prompt -> answer rows) feed the pretraining-loss mix when ptx_coef > 0. The critic defaults to a
    trainable copy of the reward model; checkpoints carry it and the reward moments beside the policy.
    """

    def __init__(self, model: PreTrainedModel, tok: PreTrainedTokenizerBase, task: Task, config: PPOConfig,
                 reward_model: RewardModel, critic: RewardModel | None = None,
                 ref_model: PreTrainedModel | None = None, ptx_pairs: list[dict[str, str]] | None = None,
                 prompt_fn: Callable[[dict], str] = plain_prompt, accuracy: RewardFn | None = None,
                 format_fn: RewardFn | None = None) -> None:
        if not isinstance(config, PPOConfig):
            raise TypeError(f"config must be a PPOConfig, got {type(config).__name__}")
        if not isinstance(reward_model, RewardModel) or not isinstance(critic, (RewardModel, type(None))):
            raise TypeError("reward_model (and critic, if given) must be RewardModel instances")
        self.reward_model = reward_model.eval().requires_grad_(False)
        self.critic = critic or copy.deepcopy(reward_model).requires_grad_(True)
        self.reward_moments = RunningMoments()
        super().__init__(model, tok, task, config, prompt_fn, accuracy, format_fn)
        if config.ptx_coef > 0 and ptx_pairs is None:
            if "answer" not in task.train[0]:
                raise ValueError(f"ptx_coef > 0: task {task.name!r} has no 'answer' column; pass ptx_pairs")
            ptx_pairs = [{"prompt": self.prompt(r), "completion": str(r["answer"])} for r in task.train]
        if config.ptx_coef > 0 and not ptx_pairs:
            raise ValueError("ptx_coef > 0 needs a non-empty list of {'prompt', 'completion'} ptx_pairs")
        self.ptx_pairs = ptx_pairs or []
        self.ref = frozen_reference(self.engine, ref_model)

    def parameter_groups(self) -> list[dict]:
        """The policy's trainable parameters at ``learning_rate`` and the critic's at ``critic_learning_rate``
        (the global gradient-norm clip spans both)."""
        c = self.config
        return super().parameter_groups() + [
            {"params": [p for p in self.critic.parameters() if p.requires_grad],
             "lr": c.critic_learning_rate or c.learning_rate}]

    def stateful(self) -> dict:
        """The base checkpoint's model and optimiser, plus the critic and the reward moments, in the same file."""
        return super().stateful() | {"critic": self.critic, "reward_moments": self.reward_moments}

    def train_step(self, step: int) -> dict[str, float]:
        """One PPO iteration: rollout, score, KL-penalised rewards, GAE, then the clipped updates."""
        c = self.config
        rng = self.rng(step)
        rows = rng.sample(self.task.train, min(c.batch_size, len(self.task.train)))
        prompts = [self.prompt(r) for r in rows]
        self.model.eval()
        ro = self.engine.generate(prompts, SamplingConfig(temperature=c.temperature, max_new_tokens=c.max_new_tokens),
                                  seed=self.seed_for(step))
        self.model.train()
        batch = (ro.prompt_ids, ro.prompt_mask, ro.completion_ids, ro.completion_mask)
        ids, mask = torch.cat([ro.prompt_ids, ro.completion_ids], 1), torch.cat([ro.prompt_mask, ro.completion_mask], 1)
        cm, c_len = ro.completion_mask.float(), ro.completion_ids.shape[1]   # V(t) is read where token t is predicted
        old_logp = ro.logprobs
        ref_logp = reference_logprobs(self.engine, self.ref, *batch, temperature=c.temperature)
        with torch.no_grad():
            old_values = completion_outputs(self.critic.token_values(ids, mask), c_len) * cm
            score = self.reward_model(ids, mask)
        s = score
        if c.normalise_rewards:
            self.reward_moments.update(score)
            s = self.reward_moments.normalise(score, c.reward_clip)
        rewards = kl_penalised_rewards(s, old_logp, ref_logp, cm, c.kl_coef)
        advantages, returns = gae(rewards, old_values, cm, c.gamma, c.lam)
        if c.normalise_advantages:
            advantages = masked_whiten(advantages, cm)

        g = torch.Generator().manual_seed(self.seed_for(step))
        stats: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "clip_frac": [],
                                         "value_clip_frac": [], "grad_norm": []}
        for _ in range(c.num_ppo_epochs):
            for mb in torch.randperm(len(rows), generator=g).chunk(c.num_mini_batches):
                logp = self.engine.logprobs(*(t[mb] for t in batch), temperature=c.temperature)
                values = completion_outputs(self.critic.token_values(ids[mb], mask[mb]), c_len)
                pl, clip_frac = policy_loss(logp, old_logp[mb], advantages[mb], cm[mb], c.clip_range)
                vl, v_clip_frac = value_loss(values, old_values[mb], returns[mb], cm[mb], c.clip_range_value)
                loss = pl + c.vf_coef * vl
                if c.ptx_coef > 0:
                    ptx = rng.sample(self.ptx_pairs, min(len(mb), len(self.ptx_pairs)))
                    loss = loss + c.ptx_coef * sft_loss(self.engine, [p["prompt"] for p in ptx],
                                                        [p["completion"] for p in ptx])
                loss.backward()
                norm = self.optimizer_step(step, loss)  # the global clip spans self.params: policy + critic
                for k, v in zip(stats, (pl, vl, clip_frac, v_clip_frac, norm)):
                    stats[k].append(float(v))
        comps = ro.completions(self.tok)
        acc = call_reward(self.accuracy, prompts, comps, columns(rows))
        return {k: sum(v) / len(v) for k, v in stats.items()} | {
            "reward": score.mean().item(), "accuracy": sum(acc) / len(acc),
            "kl": ((old_logp - ref_logp) * cm).sum(1).mean().item(), "completion_length": cm.sum(1).mean().item(),
            "reward_mean": self.reward_moments.mean, "reward_std": self.reward_moments.std}
