"""Direct Preference Optimisation: sigmoid (DPO), ipo and hinge losses on preference pairs.

With h = (logp_w - ref_w) - (logp_l - ref_l) the log-ratio margin of the chosen (w) over the rejected (l)
completion, summed over completion tokens only:

    sigmoid  -log sigmoid(beta h)            Rafailov et al. 2023, "Direct Preference Optimization", eq. 7
    ipo      (h - 1 / (2 beta))^2            Azar et al. 2023, "A General Theoretical Paradigm ...", eq. 17
    hinge    max(0, 1 - beta h)              Zhao et al. 2023, "SLiC-HF", the calibration loss

The implicit rewards are beta (logp - ref) for each side; their margin and the preference accuracy
(chosen reward > rejected reward) are logged. Pairs come from preference data or, with
``bellman.llm.pairs.sample_preference_pairs``, from the policy's own samples split by the task reward into
correct (chosen) and wrong (rejected) completions.

Usage::

    from bellman.llm import DPOConfig, DPOTrainer, load_model
    from bellman.llm.pairs import sample_preference_pairs
    from bellman.llm.tasks import arithmetic
    model, tok = load_model("runs/sft/model"); task = arithmetic()
    pairs = sample_preference_pairs(model, tok, task.train[:256], task.rewards, num_generations=8)
    DPOTrainer(model, tok, task, DPOConfig.preset("tiny", out="runs/dpo"), pairs).train()
"""

from __future__ import annotations

import typing
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bellman.llm.config import DPOConfig, DPOLossType
from bellman.llm.pairs import check_pairs
from bellman.llm.reference import frozen_reference, reference_logprobs
from bellman.llm.tasks import RewardFn, Task, plain_prompt
from bellman.llm.trainer import Trainer

LOSS_TYPES = typing.get_args(DPOLossType)


def dpo_loss(logp_chosen: torch.Tensor, logp_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1, loss_type: str = "sigmoid",
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair DPO losses and the implicit rewards beta (logp - ref) of the chosen and rejected sides.

    All four inputs are sequence log-probs of shape (B,): the sum of per-token log-probs over the
    completion tokens under the policy (`logp_*`) and the frozen reference (`ref_*`).
    Returns (losses (B,), chosen_rewards (B,), rejected_rewards (B,)); the rewards are detached.
    """
    tensors = (logp_chosen, logp_rejected, ref_chosen, ref_rejected)
    if not all(isinstance(t, torch.Tensor) for t in tensors):
        raise TypeError("dpo_loss takes four torch.Tensor sequence log-probs")
    if len({t.shape for t in tensors}) != 1 or logp_chosen.dim() != 1:
        raise ValueError(f"dpo_loss needs four (B,) tensors of one shape, got {[tuple(t.shape) for t in tensors]}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    h = (logp_chosen - ref_chosen) - (logp_rejected - ref_rejected)
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * h)
    elif loss_type == "ipo":
        losses = (h - 1.0 / (2.0 * beta)) ** 2
    else:
        losses = torch.relu(1.0 - beta * h)
    chosen_rewards = beta * (logp_chosen - ref_chosen).detach()
    rejected_rewards = beta * (logp_rejected - ref_rejected).detach()
    return losses, chosen_rewards, rejected_rewards


class DPOTrainer(Trainer):
    """DPO on preference pairs against a frozen copy of the starting policy (the reference).

    ``pairs`` ({"prompt", "chosen", "rejected"}) are typically ``sample_preference_pairs`` of the task;
    held-out accuracy is measured on the task's test split by greedy decoding, as for every trainer.
    """

    def __init__(self, model: PreTrainedModel, tok: PreTrainedTokenizerBase, task: Task, config: DPOConfig,
                 pairs: list[dict[str, str]], ref_model: PreTrainedModel | None = None,
                 prompt_fn: Callable[[dict], str] = plain_prompt, accuracy: RewardFn | None = None,
                 format_fn: RewardFn | None = None) -> None:
        if not isinstance(config, DPOConfig):
            raise TypeError(f"config must be a DPOConfig, got {type(config).__name__}")
        check_pairs(pairs)
        super().__init__(model, tok, task, config, prompt_fn, accuracy, format_fn)
        self.pairs = pairs
        self.ref = frozen_reference(self.engine, ref_model)
        enc = tok([x for p in pairs for x in (p["prompt"], p["chosen"], p["rejected"])], add_special_tokens=False)
        ids = [torch.tensor(x, dtype=torch.long) for x in enc["input_ids"]]
        eos = torch.tensor([tok.eos_token_id])
        self.tokens = [(ids[3 * i], torch.cat([ids[3 * i + 1], eos]), torch.cat([ids[3 * i + 2], eos]))
                       for i in range(len(pairs))]

    def collate(self, batch: list[int]) -> tuple[torch.Tensor, ...]:
        """Prompts (B, P) left padded (repeated to (2B, P) without prompt sharing) and completions (2B, C)
        right padded, chosen_i then rejected_i, each with its mask; pairs are tokenised in the constructor."""
        device = next(self.model.parameters()).device
        prompts = [self.tokens[i][0] for i in batch]
        completions = [self.tokens[i][k] for i in batch for k in (1, 2)]
        pad = self.tok.pad_token_id

        def padded(seqs: list[torch.Tensor], side: str) -> tuple[torch.Tensor, torch.Tensor]:
            ids = pad_sequence(seqs, batch_first=True, padding_value=pad, padding_side=side)
            mask = pad_sequence([torch.ones_like(x) for x in seqs], batch_first=True, padding_side=side)
            return ids.to(device), mask.to(device)

        p_ids, p_mask = padded(prompts, "left")
        if not self.config.share_prompt:
            p_ids, p_mask = p_ids.repeat_interleave(2, 0), p_mask.repeat_interleave(2, 0)
        return p_ids, p_mask, *padded(completions, "right")

    def sequence_logprobs(self, logp: torch.Tensor, c_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-probs (2B, C) -> (chosen (B,), rejected (B,)) summed over completion tokens,
        averaged for ipo as TRL does (Azar et al.'s loss is scale-sensitive)."""
        seq = logp.sum(1)
        if self.config.loss_type == "ipo":
            seq = seq / c_mask.sum(1)
        return seq[0::2], seq[1::2]

    def train_step(self, step: int) -> dict[str, float]:
        """One DPO update on a seeded batch of pairs; returns loss, implicit rewards, margin and accuracy."""
        c = self.config
        batch = self.collate(self.rng(step).sample(range(len(self.pairs)), min(c.batch_size, len(self.pairs))))
        ref_w, ref_l = self.sequence_logprobs(
            reference_logprobs(self.engine, self.ref, *batch, shared_prompt=c.share_prompt), batch[3])
        logp_w, logp_l = self.sequence_logprobs(self.engine.logprobs(*batch, shared_prompt=c.share_prompt), batch[3])
        losses, r_w, r_l = dpo_loss(logp_w, logp_l, ref_w, ref_l, c.beta, c.loss_type)
        loss = losses.mean()
        loss.backward()
        return {"loss": loss.item(), "rewards_chosen": r_w.mean().item(), "rewards_rejected": r_l.mean().item(),
                "margin": (r_w - r_l).mean().item(), "pref_accuracy": (r_w > r_l).float().mean().item(),
                "grad_norm": self.optimizer_step(step, loss)}
