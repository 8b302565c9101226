"""Supervised fine-tuning: next-token cross-entropy on completion tokens only (the SFT step of Ouyang et al.
2022, "Training language models to follow instructions with human feedback", arXiv:2203.02155, sec. 3.5).

    L = - sum_{i,t} m_it log pi(c_it | prompt_i, c_i,<t) / sum_{i,t} m_it

where m is the completion mask (prompt and padding tokens carry no loss), EOS included so the model
learns to stop. Rows are ``{"prompt": str, "completion": str}``; by default they are the task's
``prompt`` -> ``answer`` pairs. Defaults as TRL's SFTConfig (lr 2e-5, AdamW, grad clip 1.0).

``packing=True`` (TRL's best-fit-decreasing packing with position ids restarting per sequence) puts the
batch's sequences side by side in rows as long as its longest sequence instead of padding each one; every
token attends only to its own sequence, so the loss is the same, with a fraction of the padding. It runs
through ``lean_forward`` where the trainer's engine is a ``LeanEngine`` on a Llama / Qwen2 model; other
models train on padded rows.

Usage::

    from bellman.llm import SFTConfig, SFTTrainer, load_model
    from bellman.llm.tasks import arithmetic
    model, tok = load_model("tiny")
    SFTTrainer(model, tok, arithmetic(), SFTConfig.preset("tiny", out="runs/sft")).train()
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bellman.llm.batching import encode_completions, encode_prompts
from bellman.llm.config import SFTConfig
from bellman.llm.engine import Engine, LeanEngine
from bellman.llm.engine.lean import lean_forward, lean_supported
from bellman.llm.logprobs import head_logprobs
from bellman.llm.tasks import RewardFn, Task, plain_prompt
from bellman.llm.trainer import Trainer


def sft_loss(engine: Engine, prompts: list[str], completions: list[str]) -> torch.Tensor:
    """Mean next-token cross-entropy over the completion tokens (+ EOS) of a batch, under ``engine``'s policy."""
    p_ids, p_mask = encode_prompts(engine.tok, prompts)
    c_ids, c_mask = encode_completions(engine.tok, completions, eos=True)
    device = next(engine.model.parameters()).device
    logp = engine.logprobs(p_ids.to(device), p_mask.to(device), c_ids.to(device), c_mask.to(device))
    return -logp.sum() / c_mask.sum()


def best_fit_decreasing(lengths: list[int], width: int) -> list[list[int]]:
    """Indices of the sequences in each row: longest first, each into the fullest row it still fits."""
    if any(n > width for n in lengths):
        raise ValueError(f"a sequence of {max(lengths)} tokens does not fit rows of {width}")
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        fits = [j for j in range(len(rows)) if free[j] >= lengths[i]]
        if fits:
            j = min(fits, key=lambda j: free[j])
            rows[j].append(i)
            free[j] -= lengths[i]
        else:
            rows.append([i])
            free.append(width - lengths[i])
    return rows


def packed_sft_loss(engine: Engine, prompts: list[str], completions: list[str]) -> torch.Tensor:
    """``sft_loss`` on packed rows (``best_fit_decreasing``): mean cross-entropy over the completion tokens
    (+ EOS) that follow a token of their own sequence (an empty prompt leaves the first one unpredicted).
    Packed rows need ``lean_forward``; other engines and models get ``sft_loss`` on padded rows."""
    model, tok = engine.model, engine.tok
    if not (isinstance(engine, LeanEngine) and lean_supported(model)):
        return sft_loss(engine, prompts, completions)
    p_ids = tok(prompts, add_special_tokens=False)["input_ids"]
    c_ids = tok(completions, add_special_tokens=False)["input_ids"]
    seqs = [p + c + [tok.eos_token_id] for p, c in zip(p_ids, c_ids, strict=True)]
    width = max(len(x) for x in seqs)
    rows = best_fit_decreasing([len(x) for x in seqs], width)
    ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
    segments, positions, target = (torch.zeros((len(rows), width), dtype=torch.long) for _ in range(3))
    for r, row in enumerate(rows):
        start = 0
        for k, i in enumerate(row, start=1):
            n, end = len(seqs[i]), start + len(seqs[i])
            ids[r, start:end] = torch.tensor(seqs[i])
            segments[r, start:end] = k
            positions[r, start:end] = torch.arange(n)
            target[r, start + max(len(p_ids[i]), 1):end] = 1  # completion tokens with a predecessor
            start = end
    device = next(model.parameters()).device
    ids, segments, positions, target = ids.to(device), segments.to(device), positions.to(device), target.to(device)
    h = lean_forward(model, ids, segments > 0, positions, segments=segments, hidden=True)
    # the output at position t of a row predicts its token t + 1 (read where that token is a target)
    at = (torch.arange(len(rows), device=device)[:, None] * width + torch.arange(width - 1, device=device))
    m = target[:, 1:].bool()
    logp = head_logprobs([h.reshape(len(rows) * width, -1)], model.lm_head, at[m], ids[:, 1:][m])
    return -logp.sum() / target.sum()


class SFTTrainer(Trainer):
    """Trains on ``rows`` (default: the task's prompt -> answer pairs, or prompt -> ``completion_fn(row)``);
    evaluates on the task's test split."""

    def __init__(self, model: PreTrainedModel, tok: PreTrainedTokenizerBase, task: Task, config: SFTConfig,
                 rows: list[dict] | None = None, prompt_fn: Callable[[dict], str] = plain_prompt,
                 accuracy: RewardFn | None = None, format_fn: RewardFn | None = None,
                 completion_fn: Callable[[dict], str] | None = None) -> None:
        if not isinstance(config, SFTConfig):
            raise TypeError(f"config must be an SFTConfig, got {type(config).__name__}")
        super().__init__(model, tok, task, config, prompt_fn, accuracy, format_fn)
        if rows is None:
            if completion_fn is None and "answer" not in task.train[0]:
                raise ValueError(f"task {task.name!r} has no 'answer' column to fine-tune on; pass rows")
            target = completion_fn or (lambda r: str(r["answer"]))
            rows = [{"prompt": self.prompt(r), "completion": target(r)} for r in task.train]
        if not rows:
            raise ValueError("SFT needs a non-empty list of {'prompt', 'completion'} rows")
        if not all(isinstance(r.get("prompt"), str) and isinstance(r.get("completion"), str) for r in rows):
            raise ValueError("each SFT row must be a dict with string 'prompt' and 'completion'")
        self.rows = rows

    def train_step(self, step: int) -> dict[str, float]:
        batch = self.rng(step).sample(self.rows, min(self.config.batch_size, len(self.rows)))
        loss_fn = packed_sft_loss if self.config.packing else sft_loss
        loss = loss_fn(self.engine, [r["prompt"] for r in batch], [r["completion"] for r in batch])
        loss.backward()
        return {"loss": loss.item(), "grad_norm": self.optimizer_step(step, loss)}
