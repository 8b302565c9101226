"""Supervised fine-tuning: next-token cross-entropy on completion tokens only (ALGORITHMS.md s.12).

    L = - sum_{i,t} m_it log pi(c_it | prompt_i, c_i,<t) / sum_{i,t} m_it

where m is the completion mask (prompt and padding tokens carry no loss), EOS included so the model
learns to stop. Rows are ``{"prompt": str, "completion": str}``; by default they are the task's
``prompt`` -> ``answer`` pairs. Defaults as TRL's SFTConfig (lr 2e-5, AdamW, grad clip 1.0).

Usage::

    from bellman.llm import SFTConfig, SFTTrainer, load_model
    from bellman.llm.tasks import arithmetic
    model, tok = load_model("tiny")
    SFTTrainer(model, tok, arithmetic(), SFTConfig(out="runs/sft", learning_rate=1e-3, total_steps=500)).train()
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bellman.llm.model import completion_logprobs, encode_completions, encode_prompts
from bellman.llm.tasks import RewardFn, Task
from bellman.llm.trainer import Trainer, TrainerConfig, plain_prompt


@dataclass
class SFTConfig(TrainerConfig):
    """SFT settings; lr 2e-5 is TRL's default for real models (tiny models want ~1e-3)."""

    learning_rate: float = 2e-5
    batch_size: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


def sft_loss(model: PreTrainedModel, tok: PreTrainedTokenizerBase, prompts: list[str], completions: list[str]
             ) -> torch.Tensor:
    """Mean next-token cross-entropy over the completion tokens (+ EOS) of a batch."""
    p_ids, p_mask = encode_prompts(tok, prompts)
    c_ids, c_mask = encode_completions(tok, completions, eos=True)
    device = next(model.parameters()).device
    logp = completion_logprobs(model, p_ids.to(device), p_mask.to(device), c_ids.to(device), c_mask.to(device))
    return -logp.sum() / c_mask.sum()


class SFTTrainer(Trainer):
    """Trains on ``rows`` (default: the task's prompt -> answer pairs); evaluates on the task's test split."""

    def __init__(self, model: PreTrainedModel, tok: PreTrainedTokenizerBase, task: Task, config: SFTConfig,
                 rows: list[dict] | None = None, prompt_fn: Callable[[dict], str] = plain_prompt,
                 accuracy: RewardFn | None = None, format_fn: RewardFn | None = None) -> None:
        if not isinstance(config, SFTConfig):
            raise TypeError(f"config must be an SFTConfig, got {type(config).__name__}")
        super().__init__(model, tok, task, config, prompt_fn, accuracy, format_fn)
        if rows is None:
            if "answer" not in task.train[0]:
                raise ValueError(f"task {task.name!r} has no 'answer' column to fine-tune on; pass rows")
            rows = [{"prompt": prompt_fn(r), "completion": str(r["answer"])} for r in task.train]
        if not rows:
            raise ValueError("SFT needs a non-empty list of {'prompt', 'completion'} rows")
        if not all(isinstance(r.get("prompt"), str) and isinstance(r.get("completion"), str) for r in rows):
            raise ValueError("each SFT row must be a dict with string 'prompt' and 'completion'")
        self.rows = rows

    def train_step(self, step: int) -> dict[str, float]:
        batch = self.rng(step).sample(self.rows, min(self.config.batch_size, len(self.rows)))
        loss = sft_loss(self.model, self.tok, [r["prompt"] for r in batch], [r["completion"] for r in batch])
        loss.backward()
        return {"loss": loss.item(), "grad_norm": self.optimizer_step(step, loss)}
