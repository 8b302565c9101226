"""Shared trainer plumbing: logging, atomic resumable checkpoints, evaluation, final save.

A trainer subclasses ``Trainer`` and implements ``train_step(step) -> dict[str, float]`` (one optimiser
update, returning its metrics). ``Trainer.train()`` then does the rest, the same way for every trainer:

- ``accuracy_before`` / ``format_before`` on the held-out split (greedy decoding), before any update;
- the loop with a rich progress bar showing reward / accuracy / KL, metrics.csv and TensorBoard events
  (``OUT/tb``) every step, an atomic checkpoint (``OUT/checkpoint.pt``, written to a temp file and
  renamed) every ``checkpoint_every`` steps; a new run on the same OUT resumes from it;
- ``accuracy_after`` / ``format_after``, ``OUT/eval.json`` and the model saved with ``save_pretrained``
  in ``OUT/model`` (loadable by transformers, or by ``load_model(OUT/"model")``).

Randomness in a step must come from ``self.rng(step)`` / ``self.seed_for(step)`` so that a resumed run
continues exactly as an uninterrupted one (model + optimiser state + step are checkpointed).
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_scheduler

from bellman.llm.config import SamplingConfig, TrainerConfig
from bellman.llm.rollout import generate
from bellman.llm.tasks import RewardFn, Task, call_reward, columns, plain_prompt


RESUMABLE = ("out", "total_steps", "progress", "checkpoint_every")  # settings a resumed run may change


@torch.no_grad()
def evaluate(model: PreTrainedModel, tok: PreTrainedTokenizerBase, rows: list[dict], accuracy: RewardFn,
             prompt_fn: Callable[[dict], str] = plain_prompt, format_fn: RewardFn | None = None,
             max_new_tokens: int = 32, batch_size: int = 64) -> dict[str, float]:
    """Greedy accuracy (and format reward if ``format_fn``) on ``rows``: ``{"accuracy": a, "format": f}``."""
    if not rows:
        raise ValueError("evaluate needs at least one row")
    was_training = model.training
    model.eval()
    acc, fmt = [], []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        prompts = [prompt_fn(r) for r in chunk]
        comps = generate(model, tok, prompts, SamplingConfig(temperature=0.0, max_new_tokens=max_new_tokens)
                         ).completions(tok)
        acc += call_reward(accuracy, prompts, comps, columns(chunk))
        if format_fn is not None:
            fmt += call_reward(format_fn, prompts, comps, columns(chunk))
    model.train(was_training)
    out = {"accuracy": sum(acc) / len(acc)}
    if format_fn is not None:
        out["format"] = sum(fmt) / len(fmt)
    return out


class Trainer:
    """Base of SFT / GRPO / reward-model / PPO / DPO trainers: subclasses implement ``train_step``."""

    def __init__(self, model: PreTrainedModel, tok: PreTrainedTokenizerBase, task: Task, config: TrainerConfig,
                 prompt_fn: Callable[[dict], str] = plain_prompt, accuracy: RewardFn | None = None,
                 format_fn: RewardFn | None = None) -> None:
        if not isinstance(task, Task):
            raise TypeError(f"task must be a bellman.llm.tasks.Task, got {type(task).__name__}")
        if not isinstance(config, TrainerConfig):
            raise TypeError(f"config must be a TrainerConfig, got {type(config).__name__}")
        if tok.pad_token_id is None:
            raise ValueError("tokenizer has no pad token; set tokenizer.pad_token (e.g. to its eos_token)")
        self.model, self.tok, self.task, self.config = model, tok, task, config
        self.prompt_fn, self.accuracy, self.format_fn = prompt_fn, accuracy or task.accuracy, format_fn
        self.out = Path(config.out) if config.out else None
        torch.manual_seed(config.seed)
        self.params = [p for p in model.parameters() if p.requires_grad]
        # fused: one kernel per tensor for the whole update, the numbers of the per-tensor loop up to float rounding
        self.use_optimizer(torch.optim.AdamW(self.params, lr=config.learning_rate,
                                             weight_decay=config.weight_decay, fused=True))
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.eval_before: dict[str, float] | None = None
        self._csv_fields: list[str] = []

    # -- hooks for subclasses --------------------------------------------------------------------------
    def train_step(self, step: int) -> dict[str, float]:
        """One optimiser update; returns metrics (keys like loss, reward, accuracy, kl)."""
        raise NotImplementedError

    def rng(self, step: int) -> random.Random:
        """A Python RNG that depends only on (seed, step): resumed runs draw the same batches."""
        return random.Random(self.seed_for(step))

    def seed_for(self, step: int) -> int:
        return self.config.seed * 1_000_003 + step

    def use_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Train with ``optimizer``: each parameter group's learning rate (its rate now) follows the schedule."""
        c = self.config
        name = "constant_with_warmup" if c.lr_scheduler == "constant" else c.lr_scheduler
        self.optimizer = optimizer
        # the factor of update `step` (a function of the step alone, so a resumed run continues the schedule);
        # the scheduler also records each group's rate as its "initial_lr"
        self.lr_factor = get_scheduler(name, optimizer, num_warmup_steps=c.warmup_steps,
                                       num_training_steps=c.total_steps).lr_lambdas[0]

    def schedule_learning_rate(self, step: int) -> None:
        """Set every parameter group's learning rate to its initial rate times the schedule's factor at ``step``."""
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * self.lr_factor(step)

    def optimizer_step(self, step: int, loss: torch.Tensor | None = None) -> float:
        """Clip the global grad norm, step the optimiser at the scheduled learning rate of ``step``, zero grads;
        returns the norm before clipping."""
        if loss is not None and not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower the learning rate")
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
        if not torch.isfinite(norm):
            raise FloatingPointError(f"gradient norm is {norm.item()} at step {step}")
        self.schedule_learning_rate(step)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    # -- evaluation ------------------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        c = self.config
        rows = self.task.test[:c.eval_rows] if c.eval_rows else self.task.test
        return evaluate(self.model, self.tok, rows, self.accuracy, self.prompt_fn, self.format_fn,
                        c.eval_max_new_tokens, c.eval_batch_size)

    # -- checkpoints -----------------------------------------------------------------------------------
    def save_checkpoint(self, path: str | Path) -> None:
        """Model, optimiser, step, metrics so far and eval_before; written to a temp file, then renamed."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step,
                 "history": self.history, "eval_before": self.eval_before, "config": asdict(self.config)}
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, path: str | Path) -> None:
        """Continue from a checkpoint written with this config (``total_steps``, ``out``, ``progress`` and
        ``checkpoint_every`` may differ); any other difference is an error, not a silent mix of two runs."""
        state = torch.load(Path(path), weights_only=False)
        ours, theirs = asdict(self.config), state.get("config", {})
        differ = sorted(k for k in ours.keys() | theirs.keys() if k not in RESUMABLE and ours.get(k) != theirs.get(k))
        if differ:
            raise ValueError(f"checkpoint {str(path)!r} was written by a run with other settings ("
                             + ", ".join(f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} here" for k in differ)
                             + "); resume with the same settings or use a new output directory")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.history, self.eval_before = state["step"], state["history"], state["eval_before"]

    # -- the loop --------------------------------------------------------------------------------------
    def train(self, steps: int | None = None) -> dict[str, float]:
        """Run to ``total_steps`` (or ``steps`` more updates); resumes from OUT/checkpoint.pt if present.

        Returns the eval dict written to eval.json: accuracy_before/after (+ format_before/after).
        """
        c = self.config
        ckpt = self.out / "checkpoint.pt" if self.out else None
        if ckpt is not None and ckpt.exists() and self.step == 0:
            self.load_checkpoint(ckpt)
        if self.eval_before is None:
            self.eval_before = self.evaluate()
        end = min(c.total_steps, self.step + steps) if steps is not None else c.total_steps
        writer, metrics_csv = self._open_logs()
        self.model.train()
        try:
            with _progress(c.progress) as bar:
                task_id = bar.add_task("train", total=c.total_steps, completed=self.step)
                while self.step < end:
                    m = self.train_step(self.step)
                    self.step += 1
                    m = {"step": self.step, **{k: float(v) for k, v in m.items()}}
                    self.history.append(m)
                    self._log(m, writer, metrics_csv)
                    bar.update(task_id, advance=1, description=_describe(m))
                    if ckpt is not None and (self.step % c.checkpoint_every == 0 or self.step == c.total_steps):
                        self.save_checkpoint(ckpt)
        finally:
            if writer is not None:
                writer.close()
        return self.finish()

    def finish(self) -> dict[str, float]:
        """Evaluate after training, write eval.json and save_pretrained the model to OUT/model."""
        after = self.evaluate()
        result = {f"{k}_before": v for k, v in (self.eval_before or {}).items()}
        result |= {f"{k}_after": v for k, v in after.items()}
        result["steps"] = self.step
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "eval.json").write_text(json.dumps(result, indent=2))
            self.model.save_pretrained(self.out / "model")
            self.tok.save_pretrained(self.out / "model")
        return result

    def _open_logs(self):
        if self.out is None:
            return None, None
        from torch.utils.tensorboard import SummaryWriter
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "metrics.csv"
        rows = []
        if path.exists():  # drop rows a crashed run wrote after the checkpoint
            with path.open() as f:
                rows = [r for r in csv.DictReader(f) if float(r["step"]) <= self.step]
        self._csv_fields = _write_csv(path, rows) if rows else []
        return SummaryWriter(str(self.out / "tb"), purge_step=self.step + 1), path

    def _log(self, m: dict[str, float], writer, path: Path | None) -> None:
        if writer is not None:
            for k, v in m.items():
                if k != "step" and math.isfinite(v):
                    writer.add_scalar(k, v, int(m["step"]))
        if path is None:
            return
        if self._csv_fields and set(m) <= set(self._csv_fields):
            with path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=self._csv_fields, restval="").writerow(m)
        else:  # first row, or new metric names: rewrite with the wider header
            rows = []
            if path.exists() and self._csv_fields:
                with path.open() as f:
                    rows = list(csv.DictReader(f))
            self._csv_fields = _write_csv(path, rows + [m])


def _write_csv(path: Path, rows: list[dict]) -> list[str]:
    """Write rows atomically with the union of their keys as header; returns the header."""
    fields = list(dict.fromkeys(k for r in rows for k in r)) or ["step"]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
    return fields


def _describe(m: dict[str, float]) -> str:
    keys = ("reward", "accuracy", "format", "kl", "loss")
    return " ".join(f"{k} {m[k]:.3f}" for k in keys if k in m)


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not enabled, transient=False)
