"""Reward model: a causal LM backbone with a scalar head, trained on preference pairs (Bradley-Terry).

    r_phi(x, y) = w^T h_last(x, y)                   h_last: hidden state of the last non-pad token
    loss = -log sigmoid(r_phi(x, y_chosen) - r_phi(x, y_rejected))

Ouyang et al. 2022, "Training language models to follow instructions with human feedback", sec. 3.5
(eq. 1); Stiennon et al. 2020, "Learning to summarize from human feedback". The model is a transformers
``AutoModelForSequenceClassification`` with one label, so ``save_pretrained`` output loads back with
transformers alone; ``token_values`` reads the same head at every position, which is what the PPO critic
uses (the critic starts as a copy of the reward model, as in InstructGPT).

Usage::

    from bellman.llm.reward_model import RewardModel, RewardModelConfig, RewardModelTrainer
    rm = RewardModel.from_causal_lm(sft_model)                  # backbone copied, fresh scalar head
    trainer = RewardModelTrainer(RewardModelConfig(), rm, tok, pairs)   # pairs: prompt/chosen/rejected
    trainer.train(); rm.score(tok, ["1+2="], ["3"])
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

from bellman.llm.model import encode_completions, encode_prompts


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigmoid(r_chosen - r_rejected) over the pairs (Bradley & Terry 1952)."""
    if r_chosen.shape != r_rejected.shape or r_chosen.dim() != 1 or r_chosen.numel() == 0:
        raise ValueError(f"r_chosen and r_rejected must be non-empty (B,) tensors of one shape, got "
                         f"{tuple(r_chosen.shape)} and {tuple(r_rejected.shape)}")
    return -F.logsigmoid(r_chosen - r_rejected).mean()


class RewardModel(torch.nn.Module):
    """Scalar reward r(x, y) read at the last non-pad token of a causal LM backbone."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        if getattr(model.config, "num_labels", None) != 1 or not hasattr(model, "score"):
            raise TypeError("RewardModel wraps an AutoModelForSequenceClassification with num_labels=1 and a "
                            f"`score` head, got {type(model).__name__}")
        if model.config.pad_token_id is None:
            raise ValueError("the reward model config needs a pad_token_id")
        self.model = model

    @classmethod
    def from_causal_lm(cls, lm: PreTrainedModel, seed: int = 0) -> "RewardModel":
        """Copy the backbone of a causal LM (its weights, not the LM head) under a fresh seeded scalar head."""
        if not isinstance(lm, PreTrainedModel):
            raise TypeError(f"lm must be a transformers PreTrainedModel (merge LoRA adapters first), "
                            f"got {type(lm).__name__}")
        config = copy.deepcopy(lm.config)
        config.num_labels = 1
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_config(config)
        prefix = model.base_model_prefix
        getattr(model, prefix).load_state_dict(getattr(lm, prefix).state_dict())
        return cls(model.to(next(lm.parameters()).dtype))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "RewardModel":
        """Load a reward model written by ``save_pretrained`` from a local directory."""
        if not Path(path).is_dir():
            raise FileNotFoundError(f"reward model path {str(path)!r} is not a directory")
        return cls(AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True))

    def save_pretrained(self, path: str | Path) -> None:
        self.model.save_pretrained(path)

    def token_values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The scalar head at every position: (B, T). Position ids follow the mask (left padding safe)."""
        position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
        hidden = getattr(self.model, self.model.base_model_prefix)(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False,
        ).last_hidden_state
        return self.model.score(hidden).squeeze(-1).float()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """r(x, y) at the last position where attention_mask is 1: (B,)."""
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        last = (positions * attention_mask.long()).argmax(1)
        return self.token_values(input_ids, attention_mask)[torch.arange(input_ids.shape[0]), last]

    def score(self, tok: PreTrainedTokenizerBase, prompts: list[str], completions: list[str]) -> torch.Tensor:
        """Rewards of text pairs (prompt, completion + EOS): (B,), no gradient."""
        ids, mask = encode_pairs(tok, prompts, completions)
        with torch.no_grad():
            return self(ids.to(self.model.device), mask.to(self.model.device))


def encode_pairs(tok: PreTrainedTokenizerBase, prompts: list[str], completions: list[str],
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """prompt (left padded) + completion + EOS (right padded) as one batch of ids and attention mask."""
    if len(prompts) != len(completions):
        raise ValueError(f"got {len(prompts)} prompts and {len(completions)} completions")
    p_ids, p_mask = encode_prompts(tok, prompts)
    c_ids, c_mask = encode_completions(tok, completions)
    return torch.cat([p_ids, c_ids], 1), torch.cat([p_mask, c_mask], 1)


@dataclass
class RewardModelConfig:
    """Reward-model training settings.

    learning_rate 9e-6, one epoch and batch 64 follow InstructGPT (Ouyang et al. 2022, appendix C.2: a
    single epoch, as the reward model overfits otherwise); max_grad_norm 1.0 as TRL's RewardConfig.
    A model trained from scratch-small (the built-in tiny one) wants a larger learning rate, e.g. 1e-4.
    """

    learning_rate: float = 9e-6
    num_epochs: int = 1
    batch_size: int = 64
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.num_epochs < 1 or self.batch_size < 1:
            raise ValueError(f"num_epochs and batch_size must be >= 1, got {self.num_epochs}, {self.batch_size}")
        if not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")


def check_pairs(pairs: list[dict[str, str]]) -> None:
    """Preference pairs are a non-empty list of dicts with string "prompt", "chosen" and "rejected"."""
    if not isinstance(pairs, list) or not pairs:
        raise ValueError("preference pairs must be a non-empty list of {'prompt', 'chosen', 'rejected'} dicts")
    for i, p in enumerate(pairs):
        if not isinstance(p, dict) or not all(isinstance(p.get(k), str) for k in ("prompt", "chosen", "rejected")):
            raise ValueError(f"pair {i} must be a dict with string 'prompt', 'chosen' and 'rejected', got {p!r}")


class RewardModelTrainer:
    """Bradley-Terry training of a RewardModel on preference pairs, logging loss, accuracy and margin."""

    def __init__(self, config: RewardModelConfig, model: RewardModel, tok: PreTrainedTokenizerBase,
                 pairs: list[dict[str, str]]) -> None:
        if not isinstance(config, RewardModelConfig):
            raise TypeError(f"config must be a RewardModelConfig, got {type(config).__name__}")
        if not isinstance(model, RewardModel):
            raise TypeError(f"model must be a RewardModel, got {type(model).__name__}")
        check_pairs(pairs)
        self.config, self.model, self.tok, self.pairs = config, model, tok, pairs
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                           lr=config.learning_rate, weight_decay=config.weight_decay)
        self.step = 0

    def pair_rewards(self, batch: list[dict[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(r_chosen, r_rejected) of a batch of pairs, chosen and rejected in one forward pass."""
        prompts = [p["prompt"] for p in batch]
        ids, mask = encode_pairs(self.tok, prompts * 2, [p["chosen"] for p in batch] + [p["rejected"] for p in batch])
        r = self.model(ids.to(self.model.model.device), mask.to(self.model.model.device))
        return r[:len(batch)], r[len(batch):]

    def train_step(self, batch: list[dict[str, str]]) -> dict[str, float]:
        self.model.train()
        r_chosen, r_rejected = self.pair_rewards(batch)
        loss = bradley_terry_loss(r_chosen, r_rejected)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"reward-model loss is {loss.item()} at step {self.step}")
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.step += 1
        return {"loss": loss.item(), "accuracy": (r_chosen > r_rejected).float().mean().item(),
                "margin": (r_chosen - r_rejected).mean().item()}

    def batches(self, epoch: int) -> list[list[dict[str, str]]]:
        order = list(range(len(self.pairs)))
        random.Random(self.config.seed + epoch).shuffle(order)
        b = self.config.batch_size
        return [[self.pairs[i] for i in order[k:k + b]] for k in range(0, len(order), b)]

    @torch.no_grad()
    def evaluate(self, pairs: list[dict[str, str]]) -> dict[str, float]:
        """Preference accuracy and mean margin of the reward model on held-out pairs."""
        check_pairs(pairs)
        self.model.eval()
        r_c, r_r = zip(*(self.pair_rewards(pairs[k:k + self.config.batch_size])
                         for k in range(0, len(pairs), self.config.batch_size)))
        r_c, r_r = torch.cat(r_c), torch.cat(r_r)
        return {"accuracy": (r_c > r_r).float().mean().item(), "margin": (r_c - r_r).mean().item()}
