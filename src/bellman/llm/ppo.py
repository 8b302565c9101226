"""PPO for RLHF with the PPO-max stabilisers: a policy, a critic, a frozen reference and a reward model.

One iteration (Ouyang et al. 2022, "Training language models to follow instructions with human
feedback", sec. 3.5; Zheng et al. 2023, "Secrets of RLHF in Large Language Models Part I: PPO", sec. 5):

    sample completions y ~ pi(.|x); score s = r_phi(x, y) with the reward model
    log pi_old(y_t): one pass of the policy before the updates (not the sampler's numbers)
    s <- clip((s - mean) / std, -reward_clip, reward_clip)           running moments (reward normalisation)
    r_t = -kl_coef (log pi(y_t) - log pi_ref(y_t))  (+ s at the last completion token)
    delta_t = r_t + gamma V(t+1) - V(t);  A_t = delta_t + gamma lam A_{t+1};  R_t = A_t + V(t)   (GAE)
    A <- (A - mean A) / std A                                           (advantage normalisation)
    for n_epochs, minibatches:
        L_pi = mean max(-A ratio, -A clip(ratio, 1 - eps, 1 + eps))     ratio = pi / pi_old
        L_V  = 1/2 mean max((V - R)^2, (V_old + clip(V - V_old, -eps_v, eps_v) - R)^2)   (value clipping)
        L    = L_pi + vf_coef L_V (+ ptx_coef L_pretrain)               then global grad-norm clipping

Only completion tokens carry rewards, values, advantages and loss. The critic is initialised from the
reward model, as in InstructGPT.

Usage::

    from bellman.llm import PPORLHFConfig, PPORLHFTrainer, RewardModel, load_model
    from bellman.llm.tasks import arithmetic
    model, tok = load_model("runs/sft/model")
    rm = RewardModel.from_pretrained("runs/rm/model")            # trained with RewardModelTrainer
    PPORLHFTrainer(model, tok, arithmetic(), PPORLHFConfig.preset("tiny", out="runs/ppo"), rm).train()
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bellman.core.losses import clipped_surrogate_loss, value_loss
from bellman.core.returns import check_masked, standardize, token_gae
from bellman.llm.batching import completion_outputs
from bellman.llm.config import PPORLHFConfig, SamplingConfig
from bellman.llm.reference import frozen_reference, reference_logprobs
from bellman.llm.reward_model import RewardModel
from bellman.llm.sft import sft_loss
from bellman.llm.tasks import RewardFn, Task, call_reward, columns, plain_prompt
from bellman.llm.trainer import Trainer


def kl_penalised_rewards(scores: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor,
                         mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-token rewards r_t = -kl_coef (logp_t - ref_logp_t), plus the sequence score at its last token.

    scores (B,), logp / ref_logp / mask (B, T) over completion positions; every row needs a completion token.
    """
    for name, x in (("logp", logp), ("ref_logp", ref_logp)):
        check_masked(name, x, mask)
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


class PPORLHFTrainer(Trainer):
    """PPO-max RLHF: the policy and a critic trained against a frozen reward model and a frozen reference.

    Only the reward model's score is optimised; the task's accuracy is logged on the samples and measured
    on the held-out split (eval.json). ``ptx_pairs`` ({"prompt", "completion"}, default: the task's
    prompt -> answer rows) feed the pretraining-loss mix when ptx_coef > 0. The critic defaults to a
    trainable copy of the reward model; checkpoints carry it and the reward moments beside the policy.
    """

    def __init__(self, model: PreTrainedModel, tok: PreTrainedTokenizerBase, task: Task, config: PPORLHFConfig,
                 reward_model: RewardModel, critic: RewardModel | None = None,
                 ref_model: PreTrainedModel | None = None, ptx_pairs: list[dict[str, str]] | None = None,
                 prompt_fn: Callable[[dict], str] = plain_prompt, accuracy: RewardFn | None = None,
                 format_fn: RewardFn | None = None) -> None:
        if not isinstance(config, PPORLHFConfig):
            raise TypeError(f"config must be a PPORLHFConfig, got {type(config).__name__}")
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
        # pi_old: the policy's own log-probs from a training pass before any update (TRL's "old_logprobs"), so
        # the sampler's rounding (other matmul shapes while decoding) enters neither the ratio nor the KL
        old_logp = self.engine.logprobs(*batch, temperature=c.temperature, grad=False)
        sampler_gap = ((old_logp - ro.logprobs).abs() * cm).max()
        ref_logp = reference_logprobs(self.engine, self.ref, *batch, temperature=c.temperature)
        with torch.no_grad():
            old_values = completion_outputs(self.critic.token_values(ids, mask), c_len) * cm
            score = self.reward_model(ids, mask)
        s = score
        if c.normalize_reward:
            self.reward_moments.update(score)
            s = self.reward_moments.normalise(score, c.reward_clip)
        rewards = kl_penalised_rewards(s, old_logp, ref_logp, cm, c.kl_coef)
        advantages, returns = token_gae(rewards, old_values, cm, c.gamma, c.gae_lambda)
        if c.normalize_advantage:
            advantages = standardize(advantages, cm)

        g = torch.Generator().manual_seed(self.seed_for(step))
        stats: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "clip_frac": [],
                                         "value_clip_frac": [], "grad_norm": []}
        for _ in range(c.n_epochs):
            for mb in torch.randperm(len(rows), generator=g).chunk(c.num_mini_batches):
                logp = self.engine.logprobs(*(t[mb] for t in batch), temperature=c.temperature)
                values = completion_outputs(self.critic.token_values(ids[mb], mask[mb]), c_len)
                pl, clip_frac = clipped_surrogate_loss(torch.exp(logp - old_logp[mb]), advantages[mb], c.clip_range,
                                                       cm[mb])
                vl, v_clip_frac = value_loss(values, old_values[mb], returns[mb], c.clip_range_vf, cm[mb])
                vl = 0.5 * vl   # L_V = 1/2 E[...]
                loss = pl + c.vf_coef * vl
                if c.ptx_coef > 0:
                    ptx = rng.sample(self.ptx_pairs, min(len(mb), len(self.ptx_pairs)))
                    loss = loss + c.ptx_coef * sft_loss(self.engine, [p["prompt"] for p in ptx],
                                                        [p["completion"] for p in ptx])
                loss.backward()
                norm = self.optimizer_step(step, loss)  # the global clip spans self.params: policy + critic
                for k, v in zip(stats, (pl, vl, clip_frac, v_clip_frac, norm)):
                    stats[k].append(float(v.detach()) if isinstance(v, torch.Tensor) else float(v))
        comps = ro.completions(self.tok)
        acc = call_reward(self.accuracy, prompts, comps, columns(rows))
        return {k: sum(v) / len(v) for k, v in stats.items()} | {
            "reward": score.mean().item(), "accuracy": sum(acc) / len(acc),
            "kl": ((old_logp - ref_logp) * cm).sum(1).mean().item(), "completion_length": cm.sum(1).mean().item(),
            "sampler_logprob_gap": sampler_gap.item(),
            "reward_mean": self.reward_moments.mean, "reward_std": self.reward_moments.std}
