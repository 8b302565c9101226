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
    pairs = [{"prompt": "1+2=", "chosen": "3", "rejected": "4"}, ...]   # e.g. pairs.sample_preference_pairs
    RewardModelTrainer(rm, tok, pairs, RewardModelConfig.preset("tiny", out="runs/rm")).train()
    rm.score(tok, ["1+2="], ["3"])                              # tensor([r])
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

from bellman.llm.batching import encode_completions, encode_prompts, position_ids
from bellman.llm.config import RewardModelConfig
from bellman.llm.pairs import check_pairs
from bellman.llm.trainer import Trainer


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
            raise ValueError("the reward model config needs a pad_token_id (pass the tokenizer's to from_causal_lm)")
        self.model = model

    @classmethod
    def from_causal_lm(cls, lm: PreTrainedModel, seed: int = 0, pad_token_id: int | None = None) -> "RewardModel":
        """Copy the backbone of a causal LM (its weights, not the LM head) under a fresh seeded scalar head.

        ``pad_token_id`` (the tokenizer's) fills in a config that has none, so the saved model also works
        with transformers' own sequence-classification forward.
        """
        if not isinstance(lm, PreTrainedModel):
            raise TypeError(f"lm must be a transformers PreTrainedModel (merge LoRA adapters first), "
                            f"got {type(lm).__name__}")
        config = copy.deepcopy(lm.config)
        config.num_labels = 1
        if config.pad_token_id is None:
            config.pad_token_id = pad_token_id
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
        hidden = getattr(self.model, self.model.base_model_prefix)(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
            use_cache=False,
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


class RewardModelTrainer(Trainer):
    """Bradley-Terry training of a RewardModel on preference pairs, logging loss, accuracy and margin.

    ``eval_pairs`` are held-out pairs (default: a seeded 10% of ``pairs`` held out); eval.json's
    accuracy_before / accuracy_after are the preference accuracy on them (r_chosen > r_rejected).
    """

    def __init__(self, model: RewardModel, tok: PreTrainedTokenizerBase, pairs: list[dict[str, str]],
                 config: RewardModelConfig, eval_pairs: list[dict[str, str]] | None = None) -> None:
        if not isinstance(config, RewardModelConfig):
            raise TypeError(f"config must be a RewardModelConfig, got {type(config).__name__}")
        if not isinstance(model, RewardModel):
            raise TypeError(f"model must be a RewardModel, got {type(model).__name__}")
        check_pairs(pairs)
        if eval_pairs is None:
            if len(pairs) < 2:
                raise ValueError("need at least 2 pairs to hold some out, or pass eval_pairs")
            pairs = random.Random(config.seed).sample(pairs, len(pairs))
            n_eval = max(1, len(pairs) // 10)
            pairs, eval_pairs = pairs[n_eval:], pairs[:n_eval]
        check_pairs(eval_pairs, "eval_pairs")
        super().__init__(model, tok, None, config)  # no task: `evaluate` below scores held-out pairs
        self.pairs, self.eval_pairs = pairs, eval_pairs

    def identity(self) -> dict:
        """The base identity, with the pairs' count and a digest standing for the task."""
        digest = hashlib.sha256(json.dumps([self.pairs, self.eval_pairs], sort_keys=True).encode()).hexdigest()
        return super().identity() | {"task": f"preferences ({len(self.pairs)} pairs, sha256 {digest[:16]})"}

    def pair_rewards(self, batch: list[dict[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(r_chosen, r_rejected) of a batch of pairs, chosen and rejected in one forward pass."""
        ids, mask = encode_pairs(self.tok, [p["prompt"] for p in batch] * 2,
                                 [p["chosen"] for p in batch] + [p["rejected"] for p in batch])
        r = self.model(ids.to(self.model.model.device), mask.to(self.model.model.device))
        return r[:len(batch)], r[len(batch):]

    def train_step(self, step: int) -> dict[str, float]:
        batch = self.rng(step).sample(self.pairs, min(self.config.batch_size, len(self.pairs)))
        r_chosen, r_rejected = self.pair_rewards(batch)
        loss = bradley_terry_loss(r_chosen, r_rejected)
        loss.backward()
        return {"loss": loss.item(), "accuracy": (r_chosen > r_rejected).float().mean().item(),
                "margin": (r_chosen - r_rejected).mean().item(), "grad_norm": self.optimizer_step(step, loss)}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Preference accuracy and mean reward margin on the held-out pairs."""
        c = self.config
        pairs = self.eval_pairs[:c.eval_rows] if c.eval_rows else self.eval_pairs
        was_training = self.model.training
        self.model.eval()
        r_c, r_r = map(torch.cat, zip(*(self.pair_rewards(pairs[k:k + c.eval_batch_size])
                                        for k in range(0, len(pairs), c.eval_batch_size))))
        self.model.train(was_training)
        return {"accuracy": (r_c > r_r).float().mean().item(), "margin": (r_c - r_r).mean().item()}
