"""The loop every LLM trainer shares, on bellman's core (``bellman.core``: run directory, checkpoint,
metrics, progress, seeding).

A trainer subclasses ``Trainer`` and implements ``train_step(step) -> dict[str, float]`` (one optimiser
update, returning its metrics). ``Trainer.train()`` then does the rest, the same way for every trainer:

- ``OUT`` is held by this run alone (``core.run.RunDir``: a lock; an ``OUT`` that already holds a run is an
  error unless ``train(resume=True)``, which continues it with the same settings);
- ``accuracy_before`` / ``format_before`` on the held-out split (greedy decoding), before any update;
- the loop with a progress bar, ``metrics.csv`` and TensorBoard events (``OUT/tb``) every step, and a
  checkpoint (``OUT/checkpoint.pt``, atomic and checksummed, the one before kept as ``checkpoint.prev.pt``)
  every ``checkpoint_every`` steps holding everything ``stateful()`` names: the model and the optimiser,
  plus what a trainer adds (PPO: its critic and reward statistics), as one file;
- ``accuracy_after`` / ``format_after``, ``OUT/eval.json`` and the model saved with ``save_pretrained``
  in ``OUT/model`` (loadable by transformers, or by ``load_model(OUT/"model")``).

The optimiser is AdamW over ``parameter_groups()`` (a trainer with more than the policy to train, like
PPO's critic, adds its group there). Randomness in a step must come from ``self.rng(step)`` /
``self.seed_for(step)`` so that a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import typing
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bellman.core import checkpoint
from bellman.core.config import check_int
from bellman.core.metrics import Metrics
from bellman.core.progress import Progress
from bellman.core.resources import keep_freed_memory
from bellman.core.run import RunDir, differences
from bellman.core.seeding import derive_seed
from bellman.llm.chat import Prompt, render_prompt, uses_chat
from bellman.llm.config import LRScheduler, SamplingConfig, TrainerConfig
from bellman.llm.engine import Engine, get_engine
from bellman.llm.model import check_tokenizer
from bellman.llm.tasks import RewardFn, Task, call_reward, columns, plain_prompt

LR_SCHEDULERS = typing.get_args(LRScheduler)
RESUMABLE = ("out", "total_steps", "progress", "checkpoint_every", "keep_freed_memory")  # settings a resumed run may change


def lr_factor(step: int, schedule: str, warmup_steps: int, total_steps: int) -> float:
    """The learning-rate multiplier of update ``step``: linear warm-up from 0 over ``warmup_steps``, then
    constant, linear decay or half-cosine decay (Loshchilov & Hutter 2017, arXiv:1608.03983) to 0 at
    ``total_steps``. The same numbers as transformers' ``get_scheduler("constant_with_warmup" | "linear" |
    "cosine")`` (tested against it), as a function of the step alone so that a resumed run continues the
    schedule without a scheduler object to checkpoint."""
    if schedule not in LR_SCHEDULERS:
        raise ValueError(f"lr schedule must be one of {LR_SCHEDULERS}, got {schedule!r}")
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate(engine: Engine, rows: list[dict], accuracy: RewardFn, prompt_fn: Callable[[dict], Prompt] = plain_prompt,
             format_fn: RewardFn | None = None, max_new_tokens: int = 32, batch_size: int = 64,
             chat_template: bool | None = None) -> dict[str, float]:
    """Greedy accuracy (and format reward if ``format_fn``) of ``engine``'s policy on ``rows``:
    ``{"accuracy": a, "format": f}``. Prompts go through the chat template as ``chat_template`` says
    (``bellman.llm.chat.uses_chat``: None = if the tokenizer has one)."""
    if not rows:
        raise ValueError("evaluate needs at least one row")
    model, tok = engine.model, engine.tok
    chat = uses_chat(tok, chat_template)
    was_training = model.training
    model.eval()
    acc, fmt = [], []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        prompts = [render_prompt(tok, prompt_fn(r), chat) for r in chunk]
        comps = engine.generate(prompts, SamplingConfig(temperature=0.0, max_new_tokens=max_new_tokens)
                                ).completions(tok)
        acc += call_reward(accuracy, prompts, comps, columns(chunk))
        if format_fn is not None:
            fmt += call_reward(format_fn, prompts, comps, columns(chunk))
    model.train(was_training)
    out = {"accuracy": sum(acc) / len(acc)}
    if format_fn is not None:
        out["format"] = sum(fmt) / len(fmt)
    return out


def qualified_name(fn: Any) -> str | None:
    """``module.qualname`` of a function (what a run directory records of a prompt or reward function)."""
    if fn is None:
        return None
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


class Trainer:
    """Base of SFT / GRPO / reward-model / PPO / DPO trainers: subclasses implement ``train_step``.

    ``task`` gives the held-out rows and the accuracy reward that ``evaluate`` uses; a trainer that
    evaluates otherwise (the reward model scores held-out pairs) passes None and overrides ``evaluate``.
    """

    def __init__(self, model: PreTrainedModel, tok: PreTrainedTokenizerBase, task: Task | None,
                 config: TrainerConfig, prompt_fn: Callable[[dict], Prompt] = plain_prompt,
                 accuracy: RewardFn | None = None, format_fn: RewardFn | None = None) -> None:
        if task is not None and not isinstance(task, Task):
            raise TypeError(f"task must be a bellman.llm.tasks.Task, got {type(task).__name__}")
        if not isinstance(config, TrainerConfig):
            raise TypeError(f"config must be a TrainerConfig, got {type(config).__name__}")
        check_tokenizer(tok, "given to the trainer")
        self.model, self.tok, self.task, self.config = model, tok, task, config
        self.chat = uses_chat(tok, config.chat_template)
        self.engine = get_engine(model, tok)  # samples and scores for every trainer (bellman.llm.engine)
        self.prompt_fn, self.format_fn = prompt_fn, format_fn
        self.accuracy = accuracy or (task.accuracy if task is not None else None)
        self.out = Path(config.out) if config.out else None
        if config.keep_freed_memory and next(model.parameters()).device.type == "cpu":
            keep_freed_memory()
        torch.manual_seed(config.seed)
        groups = self.parameter_groups()
        for group in groups:
            group.setdefault("lr", config.learning_rate)
            group["initial_lr"] = group["lr"]
        self.params = [p for group in groups for p in group["params"]]
        # fused: one kernel per tensor for the whole update, the numbers of the per-tensor loop up to float rounding
        self.optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay,
                                           fused=True)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.eval_before: dict[str, float] | None = None

    def prompt(self, row: dict) -> str:
        """The text the policy reads for a task row: ``prompt_fn(row)``, through the chat template when
        ``self.chat`` (``bellman.llm.chat.render_prompt``)."""
        return render_prompt(self.tok, self.prompt_fn(row), self.chat)

    # -- hooks for subclasses --------------------------------------------------------------------------
    def train_step(self, step: int) -> dict[str, float]:
        """One optimiser update; returns metrics (keys like loss, reward, accuracy, kl)."""
        raise NotImplementedError

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The optimiser's parameter groups: the model's trainable parameters at ``learning_rate``. A trainer
        that trains more (PPO's critic) returns more groups, each with its own ``lr`` if it differs."""
        return [{"params": [p for p in self.model.parameters() if p.requires_grad]}]

    def stateful(self) -> dict[str, Any]:
        """What a checkpoint saves with ``state_dict`` / ``load_state_dict``, by name."""
        return {"model": self.model, "optimizer": self.optimizer}

    def rng(self, step: int) -> random.Random:
        """A Python RNG that depends only on (seed, step): resumed runs draw the same batches."""
        return random.Random(self.seed_for(step))

    def seed_for(self, step: int) -> int:
        """The seed of update ``step``'s randomness (``core.seeding.derive_seed``)."""
        return derive_seed(self.config.seed, step)

    def schedule_learning_rate(self, step: int) -> None:
        """Set every parameter group's learning rate to its initial rate times ``lr_factor`` at ``step``."""
        c = self.config
        factor = lr_factor(step, c.lr_scheduler, c.warmup_steps, c.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor

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
        return evaluate(self.engine, rows, self.accuracy, self.prompt_fn, self.format_fn,
                        c.eval_max_new_tokens, c.eval_batch_size, self.chat)

    # -- checkpoints -----------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """The config fields that define the run (all but those a resumed run may change, ``RESUMABLE``)."""
        return {k: v for k, v in asdict(self.config).items() if k not in RESUMABLE}

    def identity(self) -> dict[str, Any]:
        """Everything that defines this run, compared when its output directory is resumed: the trainer,
        the model, the task, the prompt template, the reward functions and the settings."""
        m = self.model
        hf_config = getattr(m, "config", None) or getattr(getattr(m, "model", None), "config", None)
        return {"trainer": type(self).__name__, "task": self.task.name if self.task is not None else None,
                "model": {"class": type(m).__name__, "name": str(getattr(hf_config, "_name_or_path", "")),
                          "parameters": sum(p.numel() for p in m.parameters())},
                "prompt": qualified_name(self.prompt_fn), "accuracy": qualified_name(self.accuracy),
                "format": qualified_name(self.format_fn), "config": self.settings()}

    def save_checkpoint(self, path: str | Path) -> None:
        """Everything ``stateful()`` names, the step, the metrics so far and eval_before, as one atomic file."""
        checkpoint.save({"kind": "bellman.llm", "trainer": type(self).__name__, "step": self.step,
                         "history": self.history, "eval_before": self.eval_before, "config": self.settings(),
                         "state": {k: v.state_dict() for k, v in self.stateful().items()}},
                        path, keep_previous=True)

    def load_checkpoint(self, path: str | Path) -> None:
        """Continue from a checkpoint written with this config (``total_steps``, ``out``, ``progress`` and
        ``checkpoint_every`` may differ); any other difference is an error, not a silent mix of two runs."""
        state = checkpoint.load(path)
        if state.get("kind") != "bellman.llm" or state.get("trainer") != type(self).__name__:
            raise ValueError(f"checkpoint {str(path)!r} was written by {state.get('trainer') or 'something else'}, "
                             f"not a {type(self).__name__}")
        differ = differences(state["config"], self.settings())
        if differ:
            raise ValueError(f"checkpoint {str(path)!r} was written by a run with other settings ("
                             + "; ".join(differ) + "); resume with the same settings or use a new output directory")
        for k, obj in self.stateful().items():
            obj.load_state_dict(state["state"][k])
        self.step, self.history, self.eval_before = state["step"], state["history"], state["eval_before"]

    # -- the loop --------------------------------------------------------------------------------------
    def train(self, steps: int | None = None, resume: bool = False) -> dict[str, float]:
        """Run to ``total_steps`` (or ``steps`` more updates). ``resume`` continues the run that ``out`` holds
        from its checkpoint; without it, an ``out`` that holds a run is an error.

        Returns the eval dict written to eval.json: accuracy_before/after (+ format_before/after).
        """
        steps = check_int("steps", steps, allow_none=True)
        c = self.config
        run = RunDir(self.out, self.identity(), resume) if self.out else contextlib.nullcontext()
        with run:
            ckpt = self.out / "checkpoint.pt" if self.out else None
            if ckpt is not None and run.resuming and ckpt.exists() and self.step == 0:
                self.load_checkpoint(ckpt)
            if self.eval_before is None:
                self.eval_before = self.evaluate()
            end = min(c.total_steps, self.step + steps) if steps is not None else c.total_steps
            self.model.train()
            with Metrics(self.out, start_step=self.step) as metrics, \
                    Progress(c.total_steps, self.step, c.progress) as bar:
                while self.step < end:
                    m = self.train_step(self.step)
                    self.step += 1
                    m = {"step": self.step, **{k: float(v) for k, v in m.items()}}
                    self.history.append(m)
                    metrics.log(m)
                    bar.advance(1, **{k: m[k] for k in ("reward", "accuracy", "format", "kl", "loss") if k in m})
                    if ckpt is not None and (self.step % c.checkpoint_every == 0 or self.step == c.total_steps):
                        self.save_checkpoint(ckpt)
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
