"""GRPO: Group Relative Policy Optimization (Shao et al. 2024, "DeepSeekMath", section 4.1).

For each prompt q sample G completions o_1..o_G from pi_old, score them with rule-based rewards r_i and
give every token of o_i the group-normalised advantage

    A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + eps)                 (no critic)

then minimise, per completion token t,

    l_it = -min(rho_it A_i, clip(rho_it, 1 - eps_low, 1 + eps_high) A_i) + beta KL_k3,
    rho_it = pi(o_it | q, o_<t) / pi_old(o_it | q, o_<t),
    KL_k3  = exp(ref - logp) - (ref - logp) - 1      (Schulman 2020, "Approximating KL divergence"; >= 0).

pi_old is the policy that sampled the batch. Sampled by the current weights, its log-probs are the training
pass's own, taken (detached) in the batch's first pass, before any update: rho = 1 in value there, with
gradient grad log pi, and later iterations of ``num_iterations`` reuse them. The sampler's log-probs of the
same tokens differ from them by float32 rounding (decoding runs other kernel shapes than the scoring pass);
that gap never enters the loss, and each step logs its largest value over the batch as
``sampler_logprob_gap``.

Loss aggregation ``loss_type``:
  "grpo"     mean over completions of the per-completion token mean   (DeepSeekMath),
  "dapo"     sum over all tokens / number of completion tokens in the batch   (Yu et al. 2025, "DAPO"),
  "dr_grpo"  sum over all tokens / (completions x max_new_tokens), and no std division in A
             (Liu et al. 2025, "Understanding R1-Zero-like training", Dr. GRPO).
DAPO extras: clip-higher (eps_high > eps_low, DAPO uses 0.2 / 0.28), dynamic sampling (drop groups whose
rewards are all equal and sample more), soft overlong punishment (linear penalty in the last
``overlong_buffer`` tokens before ``max_new_tokens``, -overlong_penalty beyond). beta = 0 keeps no reference
model (DAPO, Dr. GRPO and TRL >= 0.19 default to it).

Rollout workers (``num_workers`` > 0, ``bellman.distributed.RemoteEngine``): each holds a copy of the
policy, samples its share of the batch's prompts and computes their rewards; the learner broadcasts the
weights after each update. ``max_staleness`` 0 samples every batch with the current weights (on-policy, the
numbers of the in-process run with one worker); 1 samples the next step's batch while the learner updates,
so each batch comes from the weights before the last update, and pi_old in rho above is that behaviour
policy, whose log-probs the workers return: the clipped ratio is the importance weight that corrects for
it (one-step off-policy training, Noukhovitch et al. 2024, "Asynchronous RLHF", arXiv:2410.18252). A
resumed staleness-1 run samples its first batch with the checkpoint's weights (the batch in flight was
lost with the stopped process); with staleness 0 it continues exactly, as in-process.

``speculative=True`` samples with draft heads on the policy's last hidden state (``bellman.llm.draft``) and
exact speculative sampling (``bellman.llm.engine.speculative``): the completions and log-probs are the
policy's own, so the loss is unchanged; every ``draft_refresh_every`` updates the heads take
``draft_refresh_steps`` self-distillation steps on the batch just sampled, following the drifting policy,
and each step logs the acceptance per head.

Usage::

    from bellman.llm import GRPOConfig, GRPOTrainer, load_model
    from bellman.llm.tasks import arithmetic
    model, tok = load_model("tiny")
    result = GRPOTrainer(model, tok, arithmetic(), GRPOConfig.preset("tiny", out="runs/grpo")).train()
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bellman.llm.config import GRPOConfig, GRPOLossType, SamplingConfig
from bellman.llm.reference import frozen_reference, reference_logprobs
from bellman.llm.rollout import Rollout, cat_rollouts
from bellman.llm.tasks import RewardFn, Task, call_reward, columns, plain_prompt
from bellman.llm.trainer import Trainer


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """A_i = (r_i - mean_group) / (std_group + eps) (std unbiased, as TRL); without ``scale`` no division."""
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be 1-D, got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"group size {group_size} does not divide the batch of {rewards.numel()} rewards")
    r = rewards.view(-1, group_size)
    a = r - r.mean(1, keepdim=True)
    if scale:
        a = a / (r.std(1, keepdim=True) + eps)
    return a.reshape(-1)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(pi || ref): exp(ref - logp) - (ref - logp) - 1 >= 0."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def overlong_penalty(lengths: torch.Tensor, max_new_tokens: int, buffer: int, penalty: float = 1.0) -> torch.Tensor:
    """DAPO soft overlong punishment: 0 up to max - buffer, then linear down to -penalty at max, beyond -penalty."""
    if buffer <= 0:
        return torch.zeros_like(lengths, dtype=torch.float)
    over = (lengths.float() - (max_new_tokens - buffer)).clamp(min=0) / buffer
    return -penalty * over.clamp(max=1.0)


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
              ref_logp: torch.Tensor | None = None, beta: float = 0.0, eps_low: float = 0.2, eps_high: float = 0.2,
              loss_type: GRPOLossType = "grpo", max_new_tokens: int | None = None, n_sequences: int | None = None,
              n_tokens: float | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped GRPO objective with k3 KL, aggregated by ``loss_type``; (B, C) token tensors, (B,) advantages.

    ``n_sequences`` / ``n_tokens`` are the whole batch's completion and token counts when this call sees
    one micro-batch (the losses of micro-batches then add up to the full-batch loss).
    """
    if loss_type not in ("grpo", "dapo", "dr_grpo"):
        raise ValueError(f"loss_type must be 'grpo', 'dapo' or 'dr_grpo', got {loss_type!r}")
    if beta > 0 and ref_logp is None:
        raise ValueError("beta > 0 needs ref_logp")
    mask = mask.float()
    ratio = torch.exp(logp - old_logp)
    a = advantages.unsqueeze(1)
    per_token = -torch.min(ratio * a, ratio.clamp(1 - eps_low, 1 + eps_high) * a)
    kl = k3_kl(logp, ref_logp) if ref_logp is not None else torch.zeros_like(logp)
    if beta > 0:
        per_token = per_token + beta * kl
    n_seq = n_sequences or logp.shape[0]
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).sum() / n_seq
    elif loss_type == "dapo":
        loss = (per_token * mask).sum() / (n_tokens or mask.sum().clamp(min=1))
    else:
        if max_new_tokens is None:
            raise ValueError("loss_type 'dr_grpo' needs max_new_tokens")
        loss = (per_token * mask).sum() / (n_seq * max_new_tokens)
    n = mask.sum().clamp(min=1)
    clipped = ((ratio < 1 - eps_low) & (a < 0)) | ((ratio > 1 + eps_high) & (a > 0))
    return loss, {"kl": (kl * mask).sum() / n, "clip_ratio": (clipped.float() * mask).sum() / n}


class GRPOTrainer(Trainer):
    """GRPO on a task's prompts with its rewards (or ``rewards``); see the module docstring."""

    def __init__(self, model: PreTrainedModel, tok: PreTrainedTokenizerBase, task: Task, config: GRPOConfig,
                 rewards: list[RewardFn] | None = None, prompt_fn: Callable[[dict], str] = plain_prompt,
                 accuracy: RewardFn | None = None, format_fn: RewardFn | None = None) -> None:
        if not isinstance(config, GRPOConfig):
            raise TypeError(f"config must be a GRPOConfig, got {type(config).__name__}")
        super().__init__(model, tok, task, config, prompt_fn, accuracy, format_fn)
        self.rewards = rewards or task.rewards
        w = config.reward_weights or (1.0,) * len(self.rewards)
        if len(w) != len(self.rewards):
            raise ValueError(f"reward_weights has {len(w)} entries for {len(self.rewards)} reward functions")
        self.weights = torch.tensor(w, dtype=torch.float)
        self.scorer = RewardScorer(self.rewards, self.accuracy)
        if config.num_workers:  # sample and score on Ray workers; told of every optimiser step
            from bellman.distributed.engine import RemoteEngine
            self.engine = RemoteEngine(model, tok, config.num_workers, config.ray_address)
            self.optimizer.register_step_post_hook(lambda *_: self.engine.weights_changed())
        if config.speculative:  # exact self-speculative sampling; the heads follow the policy (``refresh_draft``)
            from bellman.llm.config import DraftConfig
            from bellman.llm.draft import DraftTrainer, draft_heads, load_heads
            from bellman.llm.engine.speculative import SpeculativeEngine
            heads = load_heads(config.draft, model) if config.draft else draft_heads(model, config.draft_kind,
                                                                                      config.draft_heads)
            k = "auto" if config.draft_auto else heads.heads if config.draft_length is None else config.draft_length
            self.engine = SpeculativeEngine(model, tok, heads, k)
            self.optimizer.register_step_post_hook(lambda *_: heads.weights_changed())
            self.drafter = DraftTrainer(model, tok, heads, DraftConfig(kind=heads.kind, heads=heads.heads,
                                                                       learning_rate=config.draft_lr,
                                                                       vocab=config.draft_vocab))
        # beta 0 keeps no reference; a LoRA model's reference is itself with adapters off (ref None)
        self.ref = frozen_reference(self.engine, None) if config.beta > 0 else None

    def stateful(self) -> dict[str, Any]:
        """The trainer's state, and the draft heads and their optimiser when sampling speculatively."""
        extra = {"draft": self.drafter.heads, "draft_optimizer": self.drafter.optimizer} if self.config.speculative else {}
        return super().stateful() | extra

    def refresh_draft(self, step: int, ro: Rollout, passed: torch.Tensor, drafted: torch.Tensor) -> dict[str, float]:
        """The step's acceptance per head (since ``passed`` / ``drafted`` were read), then, every
        ``draft_refresh_every`` updates, ``draft_refresh_steps`` distillation steps of the heads on the
        rollout just sampled (the current policy's own samples)."""
        c, e = self.config, self.engine
        d, p = e.drafted - drafted, e.passed - passed
        m = {f"acceptance_{j + 1}": float(p[j] / d[j]) for j in range(len(d)) if d[j]}
        if (step + 1) % c.draft_refresh_every == 0:
            self.model.eval()
            for _ in range(c.draft_refresh_steps):
                m["draft_loss"] = self.drafter.step_on_rollout(ro)["loss"]
            self.model.train()
        return m

    def request(self, step: int, n_prompts: int, round_: int = 0) -> tuple[list[str], SamplingConfig, int, list[dict]]:
        """What ``sample`` asks the engine for: n_prompts x G prompts, the sampling settings, the seed, the rows."""
        c = self.config
        rows = self.rng(step * 101 + round_).sample(self.task.train, min(n_prompts, len(self.task.train)))
        rows = [r for r in rows for _ in range(c.num_generations)]
        return ([self.prompt(r) for r in rows], SamplingConfig(c.temperature, c.top_p, c.top_k, c.max_new_tokens),
                self.seed_for(step) * 7 + round_, rows)

    def sample(self, step: int, n_prompts: int, round_: int = 0) -> tuple[Rollout, torch.Tensor, dict]:
        """Sample n_prompts x G completions; returns the rollout, total rewards (B,) and reward metrics."""
        c = self.config
        prompts, sampling, seed, rows = self.request(step, n_prompts, round_)
        self.model.eval()
        ro, scores = self.engine.generate_scored(prompts, sampling, seed, self.scorer, rows)
        self.model.train()
        per_fn, acc = scores[:, :-1].float(), scores[:, -1].tolist()  # (B, n_fns), (B,)
        lengths = ro.completion_mask.sum(1)
        r = per_fn @ self.weights + overlong_penalty(lengths, c.max_new_tokens, c.overlong_buffer, c.overlong_penalty)
        m = {"reward": r.mean().item(), "accuracy": sum(acc) / len(acc), "completion_length": lengths.float().mean().item()}
        m |= {f"reward_{getattr(f, '__name__', i)}": per_fn[:, i].mean().item() for i, f in enumerate(self.rewards)}
        return ro, r, m

    def settings(self) -> dict[str, Any]:
        """``Trainer.settings`` but ``ray_address``: where Ray runs does not change the run."""
        return {k: v for k, v in super().settings().items() if k != "ray_address"}

    def train(self, steps: int | None = None, resume: bool = False) -> dict[str, float]:
        """``Trainer.train``; rollout workers (``num_workers`` > 0) are stopped when it returns."""
        try:
            return super().train(steps, resume)
        finally:
            if self.config.num_workers:
                self.engine.close()

    def logprob_batch(self, ro: Rollout, sl: slice) -> tuple[tuple[torch.Tensor, ...], bool]:
        """The ``Engine.logprobs`` inputs of rollout rows ``sl`` and whether their prompt is shared: a slice of
        whole groups gives each group's prompt once for its G completions; one that splits a group gives
        every row its own prompt."""
        g, (start, stop, _) = self.config.num_generations, sl.indices(ro.prompt_ids.shape[0])
        completions = (ro.completion_ids[sl], ro.completion_mask[sl])
        if start % g or (stop - start) % g:
            return (ro.prompt_ids[sl], ro.prompt_mask[sl], *completions), False
        return (ro.prompt_ids[start:stop:g], ro.prompt_mask[start:stop:g], *completions), True

    def _ref_logprobs(self, ro: Rollout, sl: slice) -> torch.Tensor | None:
        if self.config.beta == 0:
            return None
        batch, shared = self.logprob_batch(ro, sl)
        return reference_logprobs(self.engine, self.ref, *batch, temperature=self.config.temperature,
                                  shared_prompt=shared)

    def train_step(self, step: int) -> dict[str, float]:
        c, g = self.config, self.config.num_generations
        if c.speculative:
            counts = self.engine.passed.clone(), self.engine.drafted.clone()
        ro, r, m = self.sample(step, c.prompts_per_step)
        if c.speculative:
            m |= self.refresh_draft(step, ro, *counts)
        if c.num_workers:  # updates since the weights that sampled this batch; workers lost so far
            m |= {"staleness": self.engine.version - self.engine.sampled_version,
                  "worker_restarts": self.engine.restarts}
            if c.max_staleness and step + 1 < c.total_steps:  # the next batch samples while this one trains
                prompts, sampling, seed, rows = self.request(step + 1, c.prompts_per_step)
                self.engine.prefetch(prompts, sampling, seed, self.scorer, rows)
        if c.dynamic_sampling:  # DAPO: keep only groups with reward variance, sample more to refill
            keep = _informative(r, g)
            parts = [(ro, r, keep)]
            for round_ in range(1, c.max_resample + 1):
                if sum(int(k.sum()) for *_, k in parts) >= c.prompts_per_step * g:
                    break
                ro2, r2, _ = self.sample(step, c.prompts_per_step, round_)
                parts.append((ro2, r2, _informative(r2, g)))
            ro, r = _select(parts, c.prompts_per_step * g, self.tok.pad_token_id)
            m["kept_groups"] = r.numel() / g
            if r.numel() == 0:
                return m | {"loss": 0.0, "kl": 0.0, "clip_ratio": 0.0, "grad_norm": 0.0}
        adv = group_advantages(r, g, scale=c.loss_type != "dr_grpo")
        b = r.numel()
        mb = c.micro_batch_size or b
        n_tokens = ro.completion_mask.sum().clamp(min=1).float()
        refs = [self._ref_logprobs(ro, slice(i, i + mb)) for i in range(0, b, mb)]
        # pi_old: the training pass's own log-probs before this batch's first update where these weights sampled
        # it, else (a stale batch from rollout workers) the behaviour policy's, as the sampler returned them
        behaviour = bool(c.num_workers) and self.engine.sampled_version != self.engine.version
        old: list[torch.Tensor] = []
        sampler_gap = torch.zeros(())
        for it in range(c.num_iterations):
            stats = {"loss": 0.0, "kl": 0.0, "clip_ratio": 0.0}
            for j, i in enumerate(range(0, b, mb)):
                sl = slice(i, i + mb)
                batch, shared = self.logprob_batch(ro, sl)
                logp = self.engine.logprobs(*batch, temperature=c.temperature, shared_prompt=shared)
                if it == 0:
                    old.append(ro.logprobs[sl] if behaviour else logp.detach())
                    sampler_gap = torch.maximum(sampler_gap, (logp.detach() - ro.logprobs[sl]).abs().max())
                loss, s = grpo_loss(logp, old[j], adv[sl], ro.completion_mask[sl], refs[j], c.beta,
                                    c.eps_low, c.eps_high, c.loss_type, c.max_new_tokens, b, n_tokens)
                loss.backward()
                w = ro.completion_mask[sl].sum().item() / n_tokens.item()
                stats["loss"] += loss.item()
                stats["kl"] += s["kl"].item() * w
                stats["clip_ratio"] += s["clip_ratio"].item() * w
            stats["grad_norm"] = self.optimizer_step(step, torch.tensor(stats["loss"]))
        return m | stats | {"sampler_logprob_gap": sampler_gap.item()}


@dataclass
class RewardScorer:
    """The score ``Engine.generate_scored`` computes where the completions are made: per completion, every
    reward function's value and the accuracy, as a (B, n_fns + 1) float64 tensor."""

    rewards: list[RewardFn]
    accuracy: RewardFn

    def __call__(self, prompts: list[str], completions: list[str], rows: list[dict]) -> torch.Tensor:
        cols = columns(rows)
        return torch.tensor([call_reward(f, prompts, completions, cols) for f in (*self.rewards, self.accuracy)],
                            dtype=torch.float64).T


def _informative(r: torch.Tensor, g: int) -> torch.Tensor:
    """Per completion: True where its group's rewards are not all equal."""
    grp = r.view(-1, g)
    return (grp.max(1).values > grp.min(1).values).repeat_interleave(g)


def _select(parts: list[tuple[Rollout, torch.Tensor, torch.Tensor]], limit: int, pad: int,
            ) -> tuple[Rollout, torch.Tensor]:
    """Concatenate the kept rows of several rollouts (padding widths), at most ``limit`` rows."""
    ro = cat_rollouts([ro.select(keep) for ro, _, keep in parts], pad).select(slice(None, limit))
    return ro, torch.cat([r[keep] for _, r, keep in parts])[:limit]
