"""``bellman llm ...``: post-train a causal LM from the command line.

    bellman llm sft     --task arithmetic --model tiny --out runs/sft
    bellman llm grpo    --task arithmetic --model runs/sft/model --out runs/grpo --loss-type dapo
    bellman llm eval    --task arithmetic --model runs/grpo/model --out runs/eval
    bellman llm rm      --task arithmetic --model runs/sft/model --out runs/rm
    bellman llm ppo     --task arithmetic --model runs/sft/model --reward-model runs/rm/model --out runs/ppo
    bellman llm dpo     --task arithmetic --model runs/sft/model --out runs/dpo --loss-type sigmoid
    bellman llm r1-zero --task arithmetic --out runs/r1
    bellman llm draft   --model runs/sft/model --kind mtp --heads 2 --out runs/sft/model/draft

A training command's options are the fields of its config (``bellman.llm.config``): name, type, default
and help come from the field. ``--preset`` picks the values of the options left out: ``tiny`` (the
config's preset for the built-in tiny model, the defaults --help shows), ``default`` (the published
defaults) or ``auto`` (the default of --preset: tiny for ``--model tiny`` or a directory holding the tiny
model's architecture, as saved by a run on it; default for any other model). So
``bellman llm grpo --lr 3e-4`` trains with ``GRPOConfig.preset("tiny", learning_rate=3e-4)``.
torch and transformers are imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from bellman.cli.options import Changes, options_from
from bellman.llm.config import (DPOConfig, DraftConfig, GRPOConfig, PPORLHFConfig, R1ZeroConfig,
                                RewardModelConfig, SamplingConfig, SFTConfig)

app = typer.Typer(help="LLM post-training: SFT, GRPO, R1-Zero (and rm, ppo, dpo).", no_args_is_help=True)
console = Console()

ALIASES = {"total_steps": ["--steps"], "learning_rate": ["--lr"]}
TEMPLATES = {"plain": "bellman.llm.tasks:PLAIN", "question": "bellman.llm.tasks:QUESTION",
             "r1": "bellman.llm.r1_zero:R1_ZERO", "r1-chat": "bellman.llm.r1_zero:R1_CHAT"}

TASK = typer.Option("arithmetic", help="arithmetic | arithmetic:LO[-HI] (digits) | arithmetic* | countdown | FILE.jsonl")
MODEL = typer.Option("tiny", help="tiny (built-in), a local model directory or a .gguf file")
OUT = typer.Option(..., help="output directory: metrics.csv, tb/, checkpoint.pt, model/, eval.json")
TEMPLATE = typer.Option("plain", help="prompt template: plain (the task's prompt), question (arithmetic asked in "
                                      "words, for chat models), r1 (R1-Zero tags) or r1-chat (the tags asked for "
                                      "in a chat message)")
PRESET = typer.Option("auto", help="the values of the options left out: tiny (the built-in tiny model's, shown "
                                   "as defaults), default (the published ones), or auto: tiny for --model tiny or "
                                   "a saved tiny model, default for any other model")
RESUME = typer.Option(False, "--resume", help="continue the run in OUT from its checkpoint")
LORA = typer.Option(False, help="train LoRA adapters (peft) instead of all weights")
BF16 = typer.Option(False, help="load the model in bfloat16")
GRADIENT_CHECKPOINTING = typer.Option(False, help="recompute activations in the backward pass to save memory")
PAIRS = typer.Option(None, help="JSONL with prompt, chosen, rejected; default: correct vs wrong samples of --model")
PROMPTS = typer.Option(512, help="training prompts whose samples make the preference pairs (without --pairs)")
GENERATIONS = typer.Option(8, help="samples per prompt for the preference pairs (without --pairs)")
ADD_REWARD = typer.Option([], "--add-reward", help="a built-in reward GRPO adds to the template's while training "
                                                   "(repeatable): tag_count (Open-R1's partial credit for the "
                                                   "R1-Zero tags) or format (the R1-Zero format)")
EXTRA_REWARDS = {"tag_count": "tag_count_reward", "format": "format_reward"}


def preset_for(preset: str, model: str) -> str:
    """The preset a command builds its config from: ``--preset``, with auto resolved by the model."""
    if preset != "auto":
        return preset
    return "tiny" if model == "tiny" or _has_tiny_architecture(Path(model)) else "default"


def _has_tiny_architecture(path: Path) -> bool:
    """True for a model directory whose config.json describes the built-in tiny model."""
    from bellman.llm.model import TinyConfig, char_tokenizer

    try:
        saved = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False   # load_model reports what is wrong with the directory
    tiny = {**vars(TinyConfig()), "vocab_size": len(char_tokenizer()), "model_type": "llama"}
    return all(saved.get(k) == v for k, v in tiny.items())


def load(model: str, seed: int, lora: bool = False, bf16: bool = False, gradient_checkpointing: bool = False):
    """Model and tokenizer for the --model / --lora / --bf16 / --gradient-checkpointing options."""
    from bellman.llm.model import LoraSpec, load_model
    return load_model(model, seed=seed, dtype="bfloat16" if bf16 else "float32",
                      gradient_checkpointing=gradient_checkpointing, lora=LoraSpec() if lora else None)


def task_and_template(task: str, template: str, seed: int) -> tuple[Any, Any]:
    """The task of --task and the prompt template (tasks.Template) of --template."""
    import importlib

    from bellman.llm.tasks import get_task
    if template not in TEMPLATES:
        raise ValueError(f"--template must be one of {', '.join(TEMPLATES)}, got {template!r}")
    module, _, name = TEMPLATES[template].partition(":")
    return get_task(task, seed=seed), getattr(importlib.import_module(module), name)


def start(changes: Changes, preset: str, model: str, out: Path, task: str, template: str, lora: bool = False,
          bf16: bool = False, gradient_checkpointing: bool = False) -> tuple[Any, ...]:
    """What a training command starts from: its configs (the preset with the options given, ``out`` set),
    then the model, tokenizer, task and template (seeded by the first config)."""
    name = preset_for(preset, model)
    configs = [cls.preset(name, **given, **({"out": str(out)} if "out" in cls.keys() else {}))
               for cls, given in changes.items()]
    seed = configs[0].seed
    m, tok = load(model, seed, lora, bf16, gradient_checkpointing)
    return (*configs, m, tok, *task_and_template(task, template, seed))


def report(result: dict, out: Path) -> None:
    console.print_json(json.dumps(result))
    console.print(f"wrote {out}/eval.json, metrics.csv, tb/, model/")


@app.command()
@options_from(SFTConfig, shown="tiny", aliases=ALIASES)
def sft(changes: Changes, task: str = TASK, model: str = MODEL, out: Path = OUT, template: str = TEMPLATE,
        preset: str = PRESET, resume: bool = RESUME, lora: bool = LORA, bf16: bool = BF16,
        gradient_checkpointing: bool = GRADIENT_CHECKPOINTING) -> None:
    """Supervised fine-tuning on the task's prompt -> answer pairs (the template's reply, e.g. r1-chat's tagged
    one, where it has one; loss on completion tokens only)."""
    from bellman.llm.sft import SFTTrainer
    cfg, m, tok, t, tpl = start(changes, preset, model, out, task, template, lora, bf16,
                                gradient_checkpointing)
    report(SFTTrainer(m, tok, t, cfg, prompt_fn=tpl.prompt, accuracy=tpl.accuracy_for(t),
                      format_fn=tpl.format_reward, completion_fn=tpl.completion).train(resume=resume), out)


@app.command()
@options_from(GRPOConfig, shown="tiny", aliases={**ALIASES, "num_generations": ["--generations"]})
def grpo(changes: Changes, task: str = TASK, model: str = MODEL, out: Path = OUT, template: str = TEMPLATE,
         preset: str = PRESET, resume: bool = RESUME, lora: bool = LORA, bf16: bool = BF16,
         gradient_checkpointing: bool = GRADIENT_CHECKPOINTING, add_reward: list[str] = ADD_REWARD) -> None:
    """GRPO with the task's verifiable rewards (plus the format reward with --template r1 / r1-chat, and the
    rewards of --add-reward; --reward-weights weighs the added ones first, then the template's)."""
    from bellman.llm import tasks
    from bellman.llm.grpo import GRPOTrainer
    unknown = [r for r in add_reward if r not in EXTRA_REWARDS]
    if unknown:
        raise ValueError(f"--add-reward must be one of {', '.join(EXTRA_REWARDS)}, got {', '.join(unknown)}")
    cfg, m, tok, t, tpl = start(changes, preset, model, out, task, template, lora, bf16,
                                gradient_checkpointing)
    acc, fmt = tpl.accuracy_for(t), tpl.format_reward
    base = [fmt, acc] if fmt else list(t.rewards)
    extra = [getattr(tasks, EXTRA_REWARDS[r]) for r in dict.fromkeys(add_reward)]
    rewards = [f for f in extra if f not in base] + base
    report(GRPOTrainer(m, tok, t, cfg, rewards=rewards, prompt_fn=tpl.prompt, accuracy=acc,
                       format_fn=fmt).train(resume=resume), out)


@app.command("eval")
def eval_(task: str = TASK, model: str = MODEL, out: Path = OUT, template: str = TEMPLATE, rows: int = 200,
          max_new_tokens: int = 48, seed: int = 0,
          rope_scaling: str = typer.Option("none", help="RoPE scaling applied at inference, without training: "
                                           "none, linear (position interpolation), ntk, dynamic-ntk or yarn"),
          rope_factor: float = typer.Option(1.0, help="the scaling's factor (target length / trained length), >= 1"),
          logn: bool = typer.Option(False, help="also scale the queries by log-n beyond the trained length")) -> None:
    """Greedy held-out accuracy (and format reward with --template r1) of a model; writes OUT/eval.json."""
    from bellman.core.config import check_int
    from bellman.llm.engine import get_engine
    from bellman.llm.rope import apply_rope_scaling, check_rope_scaling
    from bellman.llm.trainer import evaluate
    check_int("--rows", rows), check_int("--max-new-tokens", max_new_tokens), check_int("--seed", seed, 0)
    check_rope_scaling(rope_scaling, rope_factor)
    m, tok = load(model, seed)
    if rope_scaling != "none" or logn:
        m = apply_rope_scaling(m, rope_scaling, rope_factor, logn=logn)
    t, tpl = task_and_template(task, template, seed)
    result = evaluate(get_engine(m, tok), t.test[:rows], tpl.accuracy_for(t), tpl.prompt, tpl.format_reward,
                      max_new_tokens)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    console.print_json(json.dumps(result))


@app.command()
@options_from(DraftConfig, shown="tiny", aliases=ALIASES)
def draft(changes: Changes, task: str = TASK, model: str = MODEL,
          out: Path = typer.Option(..., help="output directory: draft.pt (the heads) and draft.json; beside the "
                                             "model, e.g. MODEL/draft"),
          template: str = TEMPLATE, preset: str = PRESET,
          eval_rows: int = typer.Option(64, help="held-out prompts whose speculative samples measure acceptance")) -> None:
    """Draft heads (--kind mtp | medusa, --heads K) for speculative decoding, trained with the model frozen by
    self-distillation on its own samples of the task's prompts; draft.json holds the acceptance per head."""
    import time

    from bellman.core.config import check_int
    from bellman.llm.chat import render_prompt, uses_chat
    from bellman.llm.draft import DraftTrainer, draft_heads, save_heads
    from bellman.llm.engine.speculative import SpeculativeEngine
    check_int("--eval-rows", eval_rows)
    cfg, m, tok, t, tpl = start(changes, preset, model, out, task, template)
    chat = uses_chat(tok, None)
    train = [render_prompt(tok, tpl.prompt(r), chat) for r in t.train]
    held_out = [render_prompt(tok, tpl.prompt(r), chat) for r in t.test[:eval_rows]]
    heads = draft_heads(m, cfg.kind, cfg.heads)
    t0 = time.perf_counter()
    history = DraftTrainer(m, tok, heads, cfg).train(train)
    seconds = time.perf_counter() - t0
    engine = SpeculativeEngine(m, tok, heads, k=cfg.heads)
    for temperature in (1.0, 0.0):
        engine.reset_stats()
        engine.generate(held_out, SamplingConfig(temperature=temperature, max_new_tokens=cfg.max_new_tokens),
                        seed=cfg.seed)
        history[-1][f"acceptance_t{temperature:g}"] = engine.acceptance()
    save_heads(heads, out)
    result = {"config": cfg.to_dict(), "train_seconds": round(seconds, 2), "loss_first": history[0]["loss"],
              **history[-1]}
    (out / "draft.json").write_text(json.dumps(result, indent=2))
    console.print_json(json.dumps(result))
    console.print(f"wrote {out}/draft.pt, draft.json")


@app.command("r1-zero")
@options_from(R1ZeroConfig, aliases={"base_model": ["--model"]}, skip=("grpo",))
def r1_zero(changes: Changes, task: str = typer.Option("arithmetic", help="arithmetic (2-3 digit addition)"),
            out: Path = OUT,
            grpo_steps: int = typer.Option(R1ZeroConfig().grpo.total_steps,
                                           help="updates of the GRPO stage (R1ZeroConfig.grpo.total_steps)"),
            resume: bool = RESUME) -> None:
    """The whole R1-Zero recipe: (tiny) base model taught plain arithmetic, then GRPO with format + accuracy."""
    from bellman.recipes.r1_zero import run
    if task != "arithmetic":
        raise ValueError(f"r1-zero runs the arithmetic task, got {task!r}")
    c = R1ZeroConfig(**changes[R1ZeroConfig])
    c = c.replace(grpo=c.grpo.replace(total_steps=grpo_steps))
    report(run(out, c, resume=resume), out)


# ---- reward model, PPO (RLHF) and DPO -------------------------------------------------------------------

def preference_pairs(pairs: Path | None, m, tok, t, prompt_fn, rewards, prompts: int, generations: int,
                     sampling: SamplingConfig, seed: int, rows=None):
    """--pairs FILE, or pairs sampled from the policy on the task's training prompts, split by the rewards."""
    from bellman.llm.pairs import load_pairs, sample_preference_pairs
    if pairs is not None:
        return load_pairs(pairs)
    out = sample_preference_pairs(m, tok, (rows or t.train)[:prompts], rewards, generations, sampling, seed=seed,
                                  prompt_fn=prompt_fn)
    if not out:
        raise ValueError("no preference pairs: every prompt's samples got one reward; raise --generations "
                         "or --temperature, or pass --pairs FILE.jsonl")
    console.print(f"{len(out)} preference pairs from {min(prompts, len(rows or t.train))} prompts x {generations} samples")
    return out


@app.command()
@options_from(RewardModelConfig, SamplingConfig, shown="tiny", aliases=ALIASES)
def rm(changes: Changes, task: str = TASK, model: str = MODEL, out: Path = OUT, pairs: Path = PAIRS,
       prompts: int = PROMPTS, generations: int = GENERATIONS, template: str = TEMPLATE, preset: str = PRESET,
       resume: bool = RESUME, bf16: bool = BF16, gradient_checkpointing: bool = GRADIENT_CHECKPOINTING) -> None:
    """Reward model (Bradley-Terry) on preference pairs; eval.json holds held-out preference accuracy."""
    from bellman.llm.reward_model import RewardModel, RewardModelTrainer
    cfg, sampling, m, tok, t, tpl = start(changes, preset, model, out, task, template, False, bf16,
                                          gradient_checkpointing)
    fmt = tpl.format_reward
    rewards = [fmt, tpl.accuracy_for(t)] if fmt else t.rewards
    train = preference_pairs(pairs, m, tok, t, tpl.prompt, rewards, prompts, generations, sampling, cfg.seed)
    held_out = None if pairs is not None else preference_pairs(
        None, m, tok, t, tpl.prompt, rewards, cfg.eval_rows, generations, sampling, cfg.seed + 1, t.test)
    report(RewardModelTrainer(RewardModel.from_causal_lm(m, cfg.seed, tok.pad_token_id), tok, train, cfg,
                              held_out).train(resume=resume), out)


@app.command()
@options_from(PPORLHFConfig, shown="tiny",
              aliases={**ALIASES, "n_epochs": ["--ppo-epochs"], "num_mini_batches": ["--mini-batches"]})
def ppo(changes: Changes, task: str = TASK, model: str = MODEL, out: Path = OUT,
        reward_model: Path = typer.Option(..., help="reward model directory (OUT/model of `bellman llm rm`)"),
        template: str = TEMPLATE, preset: str = PRESET, resume: bool = RESUME, lora: bool = LORA,
        bf16: bool = BF16, gradient_checkpointing: bool = GRADIENT_CHECKPOINTING) -> None:
    """PPO (RLHF, PPO-max) against a reward model; held-out task accuracy before / after in eval.json."""
    from bellman.llm.ppo import PPORLHFTrainer
    from bellman.llm.reward_model import RewardModel
    cfg, m, tok, t, tpl = start(changes, preset, model, out, task, template, lora, bf16,
                                gradient_checkpointing)
    trainer = PPORLHFTrainer(m, tok, t, cfg, RewardModel.from_pretrained(reward_model), prompt_fn=tpl.prompt,
                             accuracy=tpl.accuracy_for(t), format_fn=tpl.format_reward)
    report(trainer.train(resume=resume), out)


@app.command()
@options_from(DPOConfig, SamplingConfig, shown="tiny", aliases=ALIASES)
def dpo(changes: Changes, task: str = TASK, model: str = MODEL, out: Path = OUT, pairs: Path = PAIRS,
        prompts: int = PROMPTS, generations: int = GENERATIONS, template: str = TEMPLATE, preset: str = PRESET,
        resume: bool = RESUME, lora: bool = LORA, bf16: bool = BF16,
        gradient_checkpointing: bool = GRADIENT_CHECKPOINTING) -> None:
    """DPO (--loss-type sigmoid | ipo | hinge) on preference pairs; held-out accuracy in eval.json."""
    from bellman.llm.dpo import DPOTrainer
    cfg, sampling, m, tok, t, tpl = start(changes, preset, model, out, task, template, lora, bf16,
                                          gradient_checkpointing)
    acc, fmt = tpl.accuracy_for(t), tpl.format_reward
    train = preference_pairs(pairs, m, tok, t, tpl.prompt, [fmt, acc] if fmt else t.rewards, prompts,
                             generations, sampling, cfg.seed)
    report(DPOTrainer(m, tok, t, cfg, train, prompt_fn=tpl.prompt, accuracy=acc, format_fn=fmt).train(resume=resume),
           out)
