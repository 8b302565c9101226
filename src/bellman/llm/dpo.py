"""Direct Preference Optimisation: sigmoid (DPO), ipo and hinge losses on preference pairs.

With h = (logp_w - ref_w) - (logp_l - ref_l) the log-ratio margin of the chosen (w) over the rejected (l)
completion, summed over completion tokens only:

    sigmoid  -log sigmoid(beta h)            Rafailov et al. 2023, "Direct Preference Optimization", eq. 7
    ipo      (h - 1 / (2 beta))^2            Azar et al. 2023, "A General Theoretical Paradigm ...", eq. 17
    hinge    max(0, 1 - beta h)              Zhao et al. 2023, "SLiC-HF", the calibration loss

The implicit rewards are beta (logp - ref) for each side; their margin and the preference accuracy
(chosen reward > rejected reward) are logged. Pairs come from preference data or, with
`sample_preference_pairs`, from the policy's own samples split by the task reward into correct (chosen)
and wrong (rejected) completions.
"""

from __future__ import annotations

import copy
import itertools
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bellman.llm.model import completion_logprobs, encode_completions, encode_prompts
from bellman.llm.reward_model import check_pairs
from bellman.llm.rollout import SamplingConfig, generate
from bellman.llm.tasks import RewardFn, call_reward, columns

LOSS_TYPES = ("sigmoid", "ipo", "hinge")


def dpo_loss(logp_chosen: torch.Tensor, logp_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1, loss_type: str = "sigmoid",
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair DPO losses and the implicit rewards beta (logp - ref) of the chosen and rejected sides.

    All four inputs are sequence log-probs of shape (B,): the sum of per-token log-probs over the
    completion tokens under the policy (logp_*) and the frozen reference (ref_*).
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


def build_preference_pairs(prompts: list[str], completions: list[str], rewards: list[float],
                           max_pairs_per_prompt: int = 4) -> list[dict[str, str]]:
    """Pair sampled completions of the same prompt: best-rewarded ones (chosen) against lower-rewarded ones.

    For every prompt whose samples do not all share one reward, the distinct completions with the highest
    reward are paired with the distinct completions of lower reward (lowest first), spreading the pairs
    over both sides before repeating one, up to max_pairs_per_prompt.
    Returns dicts with the TRL preference columns "prompt", "chosen", "rejected"; order follows the input.
    """
    if not (len(prompts) == len(completions) == len(rewards)):
        raise ValueError(f"prompts, completions and rewards must have one length, got "
                         f"{len(prompts)}, {len(completions)}, {len(rewards)}")
    if max_pairs_per_prompt < 1:
        raise ValueError(f"max_pairs_per_prompt must be >= 1, got {max_pairs_per_prompt}")
    groups: dict[str, list[tuple[str, float]]] = {}
    for prompt, completion, reward in zip(prompts, completions, rewards):
        if reward != reward:
            raise ValueError(f"reward is NaN for prompt {prompt!r}")
        groups.setdefault(prompt, []).append((completion, float(reward)))
    pairs = []
    for prompt, samples in groups.items():
        best = max(r for _, r in samples)
        chosen = list(dict.fromkeys(c for c, r in samples if r == best))
        lower = sorted({(r, c) for c, r in samples if r < best})
        rejected = list(dict.fromkeys(c for _, c in lower))
        ij = sorted(itertools.product(range(len(chosen)), range(len(rejected))), key=lambda ij: (max(ij), ij))
        pairs.extend({"prompt": prompt, "chosen": chosen[i], "rejected": rejected[j]}
                     for i, j in ij[:max_pairs_per_prompt])
    return pairs


def sample_preference_pairs(model: PreTrainedModel, tok: PreTrainedTokenizerBase, rows: list[dict],
                            reward_fns: list[RewardFn], num_generations: int = 8,
                            sampling: SamplingConfig | None = None, batch_size: int = 64, seed: int = 0,
                            max_pairs_per_prompt: int = 4) -> list[dict[str, str]]:
    """Pairs from the policy's own samples: num_generations completions per task row, scored by the summed
    task rewards, correct (best) against wrong (lower) with ``build_preference_pairs``."""
    if not rows:
        raise ValueError("rows must be a non-empty list of task rows")
    if num_generations < 2:
        raise ValueError(f"num_generations must be >= 2 to compare samples, got {num_generations}")
    expanded = [r for r in rows for _ in range(num_generations)]
    prompts, completions, rewards = [], [], []
    for k in range(0, len(expanded), batch_size):
        chunk = expanded[k:k + batch_size]
        p = [r["prompt"] for r in chunk]
        c = generate(model, tok, p, sampling or SamplingConfig(), seed=seed + k).completions(tok)
        scores = [call_reward(fn, p, c, columns(chunk)) for fn in reward_fns]
        prompts += p
        completions += c
        rewards += [sum(s) for s in zip(*scores)]
    return build_preference_pairs(prompts, completions, rewards, max_pairs_per_prompt)


@dataclass
class DPOConfig:
    """DPO settings; defaults from Rafailov et al. 2023 (appendix B: beta 0.1, learning rate 1e-6, batch 64)
    and TRL's DPOConfig (max_grad_norm 1.0). The built-in tiny model wants a larger learning rate (~1e-4)."""

    beta: float = 0.1
    loss_type: str = "sigmoid"
    learning_rate: float = 1e-6
    batch_size: int = 64
    num_epochs: int = 1
    max_grad_norm: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if not self.beta > 0 or not self.learning_rate > 0 or not self.max_grad_norm > 0:
            raise ValueError("beta, learning_rate and max_grad_norm must be > 0, got "
                             f"{self.beta}, {self.learning_rate}, {self.max_grad_norm}")
        if self.batch_size < 1 or self.num_epochs < 1:
            raise ValueError(f"batch_size and num_epochs must be >= 1, got {self.batch_size}, {self.num_epochs}")


class DPOTrainer:
    """DPO on preference pairs against a frozen copy of the starting policy (the reference)."""

    def __init__(self, config: DPOConfig, model: PreTrainedModel, tok: PreTrainedTokenizerBase,
                 pairs: list[dict[str, str]], ref_model: PreTrainedModel | None = None) -> None:
        if not isinstance(config, DPOConfig):
            raise TypeError(f"config must be a DPOConfig, got {type(config).__name__}")
        check_pairs(pairs)
        self.config, self.model, self.tok, self.pairs = config, model, tok, pairs
        self.ref_model = (ref_model or copy.deepcopy(model)).eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                           lr=config.learning_rate, weight_decay=0.0)
        self.step = 0

    def sequence_logprobs(self, model: PreTrainedModel, batch: list[dict[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(logp_chosen, logp_rejected): completion log-probs summed over tokens (averaged for ipo, as TRL),
        chosen and rejected in one forward pass."""
        p_ids, p_mask = encode_prompts(self.tok, [p["prompt"] for p in batch] * 2)
        c_ids, c_mask = encode_completions(self.tok, [p["chosen"] for p in batch] + [p["rejected"] for p in batch])
        device = next(model.parameters()).device
        logp = completion_logprobs(model, p_ids.to(device), p_mask.to(device), c_ids.to(device), c_mask.to(device))
        logp = logp.sum(1)
        if self.config.loss_type == "ipo":
            logp = logp / c_mask.sum(1).to(device)
        return logp[:len(batch)], logp[len(batch):]

    def train_step(self, batch: list[dict[str, str]]) -> dict[str, float]:
        """One DPO update on a batch of pairs; returns loss, implicit rewards, margin and accuracy."""
        self.model.train()
        with torch.no_grad():
            ref_w, ref_l = self.sequence_logprobs(self.ref_model, batch)
        logp_w, logp_l = self.sequence_logprobs(self.model, batch)
        losses, r_w, r_l = dpo_loss(logp_w, logp_l, ref_w, ref_l, self.config.beta, self.config.loss_type)
        loss = losses.mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"DPO loss is {loss.item()} at step {self.step}")
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.step += 1
        return {"loss": loss.item(), "rewards_chosen": r_w.mean().item(), "rewards_rejected": r_l.mean().item(),
                "margin": (r_w - r_l).mean().item(), "accuracy": (r_w > r_l).float().mean().item()}

    def batches(self, epoch: int) -> list[list[dict[str, str]]]:
        order = list(range(len(self.pairs)))
        random.Random(self.config.seed + epoch).shuffle(order)
        b = self.config.batch_size
        return [[self.pairs[i] for i in order[k:k + b]] for k in range(0, len(order), b)]
