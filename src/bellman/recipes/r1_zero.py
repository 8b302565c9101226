"""The R1-Zero recipe on the built-in tiny model (DeepSeek-AI 2025, "DeepSeek-R1", arXiv:2501.12948,
section 2.2), an experiment built from the library's parts: a base model pretrained here, then GRPO with the
R1-Zero template and rewards (``bellman.llm.r1_zero``).

1. A base model. The built-in tiny model is first taught plain text (``base_corpus``): worked arithmetic
   (column addition with carries, e.g. ``736+37=6+7+0=13 A3,3+3+1=7 A73,7+0+0=7 A773``) and generic text:
   repeated phrases and markup whose tag names are common words or made-up letters, so the model learns to
   close and refill a tag by copying its name from the context (induction). It never sees the template or a
   <think> / <answer> tag ("think" and "answer" occur only as plain words). In most of its forms the result
   follows the closed work tag after a space, so the base model writes the work, closes the tag and gives the
   bare result: greedily it almost never follows the template's format, but sampling fills the second tag now
   and then, which is what GRPO can reinforce. The corpus's constants (``FILLED_FORMS``, the mix of forms) were
   chosen for that starting point. Any other local causal LM can be the base instead (``base_model``).
2. GRPO with format + accuracy rewards (``R1ZeroConfig.grpo``).

Usage::

    from bellman.recipes.r1_zero import R1ZeroConfig, run
    result = run("runs/r1", R1ZeroConfig())   # eval.json: accuracy_before/after, format_before/after
"""

from __future__ import annotations

import random
import string
import time
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bellman.llm.config import R1ZeroConfig, SFTConfig
from bellman.llm.grpo import GRPOTrainer
from bellman.llm.model import load_model
from bellman.llm.r1_zero import accuracy_reward, prompt
from bellman.llm.sft import SFTTrainer
from bellman.llm.tasks import Task, format_reward

__all__ = ["R1ZeroConfig", "base_corpus", "pretrain_base", "run"]

WORDS = ("the a one cat dog sun moon tree river stone bird fish red blue green small big old new runs sees finds "
         "likes eats sleeps jumps sings on in under over near and but so then very quite here there think answer "
         "reason sum add work note list item name page book word line part step").split()
FORBIDDEN = ("think", "answer")
FILLED_FORMS = 0.3  # a base model that mostly writes the result after the closed tag: format near 0 greedily


def worked_sum(question: str) -> str:
    """Column addition of ``a+b`` from the ones digit up: ``a_i+b_i+carry=s A<digits so far>``, comma separated."""
    a, b = question.split("+")
    n = max(len(a), len(b))
    a, b = a.zfill(n), b.zfill(n)
    carry, acc, steps = 0, "", []
    for i in range(n - 1, -1, -1):
        s = int(a[i]) + int(b[i]) + carry
        carry, acc = s // 10, str(s % 10) + acc
        steps.append(f"{a[i]}+{b[i]}+{s - int(a[i]) - int(b[i])}={s} A{(str(carry) if carry and i == 0 else '') + acc}")
    return ",".join(steps)


def words(rng: random.Random, k: int) -> str:
    """``k`` random words."""
    return " ".join(rng.choice(WORDS) for _ in range(k))


def random_sum(rng: random.Random) -> tuple[str, int]:
    """A random ``a+b`` (1 to 999 each) written out as ``a+b=worked_sum``, and its value."""
    a, b = rng.randint(1, 999), rng.randint(1, 999)
    return f"{a}+{b}={worked_sum(f'{a}+{b}')}", a + b


def generic_text(rng: random.Random) -> str:
    """One short generic document: a phrase of tag names said twice (which teaches copying), markup, or a
    small form (empty tags, then the first tag filled with a worked sum) whose result goes into the second
    tag in ``FILLED_FORMS`` of the forms and after a space in the rest, as people often write it."""
    def content() -> str:
        return random_sum(rng)[0] if rng.random() < 0.4 else words(rng, rng.randint(1, 3))
    kind = rng.random()
    if kind < 0.3:
        s = " ".join(tag_name(rng) for _ in range(rng.randint(2, 5))) + "."
        return f"{s} {words(rng, rng.randint(1, 3))}, {s}"
    t, u = tag_name(rng), tag_name(rng)
    while u == t:
        u = tag_name(rng)
    if kind < 0.5:
        second = f" {words(rng, 1)} <{u}>{words(rng, rng.randint(1, 2))}</{u}>"
        return f"<{t}>{content()}</{t}>" + rng.choice(("", second))
    work, total = random_sum(rng)  # a worksheet: the work in one field, the result in another
    form = f"{words(rng, 2)} <{t}> </{t}>, {words(rng, rng.randint(1, 3))} <{u}> </{u}>.\n<{t}>{work}</{t}>"
    return form + (f"<{u}>{total}</{u}>" if rng.random() < FILLED_FORMS else f" {total}")


def tag_name(rng: random.Random) -> str:
    """A tag name: a common word or made-up letters, never "think" or "answer" (the template's tags). Made-up
    names can only be closed or refilled by copying them from the context, not by recalling a list."""
    while True:
        name = rng.choice(WORDS) if rng.random() < 0.6 else \
            "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 7)))
        if name not in FORBIDDEN:
            return name


def base_corpus(task: Task, n_generic: int, seed: int = 0) -> list[dict]:
    """Pretraining documents of the base model, each trained on in full (loss on every token): the task's
    training questions worked out as plain text (addition: ``question=worked_sum``; otherwise
    ``question=answer``), half of them after a generic sentence so that arithmetic also follows other text,
    and ``n_generic`` generic documents."""
    rng = random.Random(seed)

    def worked(r: dict) -> str:
        return r["prompt"] + (worked_sum(r["question"]) if "+" in r["question"] else str(r["answer"]))
    docs = [(f"{words(rng, rng.randint(2, 6))}.\n" if rng.random() < 0.5 else "") + worked(r) for r in task.train]
    docs += [generic_text(rng) for _ in range(n_generic)]
    rng.shuffle(docs)
    return [{"prompt": "", "completion": d} for d in docs]


def pretrain_base(task: Task, config: R1ZeroConfig, out: Path | None = None, resume: bool = False,
                  ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict]:
    """Step 1: the base model, taught ``base_corpus`` with next-token cross-entropy (no template), packed
    rows, cosine learning-rate decay after a short warm-up."""
    model, tok = load_model(config.base_model, seed=config.seed)
    sft = SFTConfig(out=str(out) if out else None, learning_rate=config.pretrain_lr, lr_scheduler="cosine",
                    warmup_steps=config.pretrain_warmup_steps, packing=True, batch_size=config.pretrain_batch_size,
                    total_steps=config.pretrain_steps, seed=config.seed,
                    eval_rows=min(config.n_test, 100), eval_max_new_tokens=80,
                    checkpoint_every=max(1, config.pretrain_steps // 4), progress=config.grpo.progress)
    result = SFTTrainer(model, tok, task, sft, rows=base_corpus(task, config.n_generic, config.seed),
                        prompt_fn=prompt, accuracy=accuracy_reward, format_fn=format_reward).train(resume=resume)
    return model, tok, result


def run(out: str | Path | None, config: R1ZeroConfig | None = None, task: Task | None = None,
        resume: bool = False) -> dict:
    """Pretrain the base model (skipped when ``base_model`` is a path), then R1-Zero GRPO; returns eval.json.
    ``resume`` continues both stages from the checkpoints in ``out``."""
    c = config or R1ZeroConfig()
    task = task or c.task()
    out = Path(out) if out else None
    torch.manual_seed(c.seed)
    t0 = time.perf_counter()
    if c.base_model == "tiny":
        model, tok, _ = pretrain_base(task, c, out / "base" if out else None, resume)
    else:
        model, tok = load_model(c.base_model, seed=c.seed)
    t1 = time.perf_counter()
    g = c.grpo.replace(out=str(out) if out else None, seed=c.seed)
    trainer = GRPOTrainer(model, tok, task, g, rewards=[format_reward, accuracy_reward], prompt_fn=prompt,
                          accuracy=accuracy_reward, format_fn=format_reward)
    result = trainer.train(resume=resume)
    result |= {"pretrain_seconds": t1 - t0, "grpo_seconds": time.perf_counter() - t1}
    if out is not None:
        import json
        (out / "eval.json").write_text(json.dumps(result, indent=2))
    return result
