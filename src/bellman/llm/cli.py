"""``bellman llm ...``: post-train a causal LM from the command line.

    bellman llm sft    --task arithmetic --model tiny --out runs/sft --steps 500 --lr 1e-3
    bellman llm grpo   --task arithmetic --model runs/sft/model --out runs/grpo --steps 50 --lr 1e-4
    bellman llm eval   --task arithmetic --model runs/grpo/model --out runs/eval
    bellman llm rm     --task arithmetic --model runs/sft/model --out runs/rm
    bellman llm ppo    --task arithmetic --model runs/sft/model --reward-model runs/rm/model --out runs/ppo
    bellman llm dpo    --task arithmetic --model runs/sft/model --out runs/dpo --loss-type sigmoid
    bellman llm r1-zero --task arithmetic --out runs/r1

--task is arithmetic | arithmetic* | countdown | FILE.jsonl; --model is tiny or a local directory written by
save_pretrained (any Hugging Face causal LM; add --lora, --bf16, --gradient-checkpointing for big ones).
Each command is one ``@app.command`` function; torch and transformers are imported inside commands.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(help="LLM post-training: SFT, GRPO, R1-Zero (and rm, ppo, dpo).", no_args_is_help=True)
console = Console()

TASK = typer.Option("arithmetic", help="arithmetic | arithmetic* | countdown | FILE.jsonl")
MODEL = typer.Option("tiny", help="tiny (built-in) or a local model directory")
OUT = typer.Option(..., help="output directory: metrics.csv, tb/, checkpoint.pt, model/, eval.json")
TEMPLATE = typer.Option("plain", help="prompt template: plain (the task's prompt) or r1 (R1-Zero tags)")


def load(model: str, seed: int = 0, lora: bool = False, bf16: bool = False, gradient_checkpointing: bool = False):
    """Model and tokenizer for the --model / --lora / --bf16 / --gradient-checkpointing options."""
    from bellman.llm.model import LoraSpec, load_model
    return load_model(model, seed=seed, dtype="bfloat16" if bf16 else "float32",
                      gradient_checkpointing=gradient_checkpointing, lora=LoraSpec() if lora else None)


def task_and_template(task: str, template: str, seed: int = 0):
    """(task, prompt_fn, accuracy, format_fn) for the --task / --template options."""
    from bellman.llm.r1_zero import R1_ZERO
    from bellman.llm.tasks import PLAIN, get_task
    templates = {"plain": PLAIN, "r1": R1_ZERO}
    if template not in templates:
        raise ValueError(f"--template must be 'plain' or 'r1', got {template!r}")
    t, chosen = get_task(task, seed=seed), templates[template]
    return t, chosen.prompt, chosen.accuracy_for(t), chosen.format_reward


def report(result: dict, out: Path) -> None:
    console.print_json(json.dumps(result))
    console.print(f"wrote {out}/eval.json, metrics.csv, tb/, model/")


@app.command()
def sft(task: str = TASK, model: str = MODEL, out: Path = OUT, steps: int = 500, lr: float = 1e-3,
        batch_size: int = 32, seed: int = 0, template: str = TEMPLATE, eval_rows: int = 200,
        lora: bool = False, bf16: bool = False, gradient_checkpointing: bool = False) -> None:
    """Supervised fine-tuning on the task's prompt -> answer pairs (loss on completion tokens only)."""
    from bellman.llm.sft import SFTConfig, SFTTrainer
    m, tok = load(model, seed, lora, bf16, gradient_checkpointing)
    t, prompt_fn, acc, fmt = task_and_template(task, template, seed)
    cfg = SFTConfig(out=str(out), total_steps=steps, learning_rate=lr, batch_size=batch_size, seed=seed,
                    eval_rows=eval_rows)
    report(SFTTrainer(m, tok, t, cfg, prompt_fn=prompt_fn, accuracy=acc, format_fn=fmt).train(), out)


@app.command()
def grpo(task: str = TASK, model: str = MODEL, out: Path = OUT, steps: int = 100, lr: float = 1e-4,
         generations: int = 8, prompts_per_step: int = 8, beta: float = 0.04, eps_low: float = 0.2,
         eps_high: float = 0.2, loss_type: str = "grpo", temperature: float = 1.0, max_new_tokens: int = 32,
         dynamic_sampling: bool = False, overlong_buffer: int = 0, seed: int = 0, template: str = TEMPLATE,
         eval_rows: int = 200, lora: bool = False, bf16: bool = False, gradient_checkpointing: bool = False) -> None:
    """GRPO with the task's verifiable rewards (plus the format reward with --template r1)."""
    from bellman.llm.grpo import GRPOConfig, GRPOTrainer
    m, tok = load(model, seed, lora, bf16, gradient_checkpointing)
    t, prompt_fn, acc, fmt = task_and_template(task, template, seed)
    cfg = GRPOConfig(out=str(out), total_steps=steps, learning_rate=lr, num_generations=generations,
                     prompts_per_step=prompts_per_step, beta=beta, eps_low=eps_low, eps_high=eps_high,
                     loss_type=loss_type, temperature=temperature, max_new_tokens=max_new_tokens,
                     dynamic_sampling=dynamic_sampling, overlong_buffer=overlong_buffer, seed=seed,
                     eval_rows=eval_rows, eval_max_new_tokens=max_new_tokens)
    rewards = [fmt, acc] if fmt else None
    report(GRPOTrainer(m, tok, t, cfg, rewards=rewards, prompt_fn=prompt_fn, accuracy=acc, format_fn=fmt).train(), out)


@app.command("eval")
def eval_(task: str = TASK, model: str = MODEL, out: Path = OUT, template: str = TEMPLATE, rows: int = 200,
          max_new_tokens: int = 48, seed: int = 0) -> None:
    """Greedy held-out accuracy (and format reward with --template r1) of a model; writes OUT/eval.json."""
    from bellman.llm.trainer import evaluate
    m, tok = load(model, seed)
    t, prompt_fn, acc, fmt = task_and_template(task, template, seed)
    result = evaluate(m, tok, t.test[:rows], acc, prompt_fn, fmt, max_new_tokens)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    console.print_json(json.dumps(result))


@app.command("r1-zero")
def r1_zero(task: str = typer.Option("arithmetic", help="arithmetic (2-3 digit addition)"), out: Path = OUT,
            model: str = typer.Option("tiny", help="tiny: pretrain the built-in base model first; or a base model dir"),
            pretrain_steps: int | None = typer.Option(None, help="base pretraining steps (default: R1ZeroConfig.pretrain_steps)"),
            grpo_steps: int | None = typer.Option(None, help="GRPO steps (default: R1ZeroConfig.grpo.total_steps)"),
            seed: int = 0) -> None:
    """The whole R1-Zero recipe: (tiny) base model taught plain arithmetic, then GRPO with format + accuracy."""
    from dataclasses import replace

    from bellman.llm.r1_zero import R1ZeroConfig, run
    if task != "arithmetic":
        raise ValueError(f"r1-zero runs the arithmetic task, got {task!r}")
    c = R1ZeroConfig(seed=seed, base_model=model)
    if pretrain_steps is not None:
        c.pretrain_steps = pretrain_steps
    if grpo_steps is not None:
        c.grpo = replace(c.grpo, total_steps=grpo_steps)
    report(run(out, c), out)


# ---- reward model, PPO (RLHF) and DPO -------------------------------------------------------------------

PAIRS = typer.Option(None, help="JSONL with prompt, chosen, rejected; default: correct vs wrong samples of --model")


def preference_pairs(pairs: Path | None, m, tok, t, prompt_fn, rewards, prompts: int, generations: int,
                     temperature: float, max_new_tokens: int, seed: int, rows=None):
    """--pairs FILE, or pairs sampled from the policy on the task's training prompts, split by the rewards."""
    from bellman.llm.dpo import sample_preference_pairs
    from bellman.llm.reward_model import load_pairs
    from bellman.llm.rollout import SamplingConfig
    if pairs is not None:
        return load_pairs(pairs)
    out = sample_preference_pairs(m, tok, (rows or t.train)[:prompts], rewards, generations,
                                  SamplingConfig(temperature=temperature, max_new_tokens=max_new_tokens),
                                  seed=seed, prompt_fn=prompt_fn)
    if not out:
        raise ValueError("no preference pairs: every prompt's samples got one reward; raise --generations "
                         "or --temperature, or pass --pairs FILE.jsonl")
    console.print(f"{len(out)} preference pairs from {min(prompts, len(rows or t.train))} prompts x {generations} samples")
    return out


@app.command()
def rm(task: str = TASK, model: str = MODEL, out: Path = OUT, pairs: Path = PAIRS, steps: int = 300,
       lr: float = 1e-4, batch_size: int = 32, prompts: int = 512, generations: int = 8,
       temperature: float = 1.0, max_new_tokens: int = 16, seed: int = 0, template: str = TEMPLATE,
       eval_rows: int = 200, bf16: bool = False, gradient_checkpointing: bool = False) -> None:
    """Reward model (Bradley-Terry) on preference pairs; eval.json holds held-out preference accuracy."""
    from bellman.llm.reward_model import RewardModel, RewardModelConfig, RewardModelTrainer
    m, tok = load(model, seed, False, bf16, gradient_checkpointing)
    t, prompt_fn, acc, fmt = task_and_template(task, template, seed)
    rewards = [fmt, acc] if fmt else t.rewards
    train = preference_pairs(pairs, m, tok, t, prompt_fn, rewards, prompts, generations, temperature,
                             max_new_tokens, seed)
    held_out = None if pairs is not None else preference_pairs(
        None, m, tok, t, prompt_fn, rewards, eval_rows, generations, temperature, max_new_tokens, seed + 1, t.test)
    cfg = RewardModelConfig(out=str(out), total_steps=steps, learning_rate=lr, batch_size=batch_size, seed=seed,
                            eval_rows=eval_rows)
    report(RewardModelTrainer(RewardModel.from_causal_lm(m, seed, tok.pad_token_id), tok, train, cfg, held_out).train(), out)


@app.command()
def ppo(task: str = TASK, model: str = MODEL, out: Path = OUT,
        reward_model: Path = typer.Option(..., help="reward model directory (OUT/model of `bellman llm rm`)"),
        steps: int = 40, lr: float = 1e-5, batch_size: int = 64, ppo_epochs: int = 2, mini_batches: int = 2,
        kl_coef: float = 0.2, vf_coef: float = 0.1, temperature: float = 1.0, max_new_tokens: int = 16,
        ptx_coef: float = 0.0, seed: int = 0, template: str = TEMPLATE, eval_rows: int = 200,
        lora: bool = False, bf16: bool = False, gradient_checkpointing: bool = False) -> None:
    """PPO (RLHF, PPO-max) against a reward model; held-out task accuracy before / after in eval.json.

    Defaults are the ones that raised the tiny model's accuracy in benchmarks/llm_gains.py; a larger lr or a
    smaller --kl-coef lets the policy over-optimise an imperfect reward model.
    """
    from bellman.llm.ppo import PPORLHFConfig, PPORLHFTrainer
    from bellman.llm.reward_model import RewardModel
    m, tok = load(model, seed, lora, bf16, gradient_checkpointing)
    t, prompt_fn, acc, fmt = task_and_template(task, template, seed)
    cfg = PPORLHFConfig(out=str(out), total_steps=steps, learning_rate=lr, batch_size=batch_size,
                    n_epochs=ppo_epochs, num_mini_batches=mini_batches, kl_coef=kl_coef, vf_coef=vf_coef,
                    temperature=temperature, max_new_tokens=max_new_tokens, ptx_coef=ptx_coef, seed=seed,
                    eval_rows=eval_rows, eval_max_new_tokens=max_new_tokens)
    trainer = PPORLHFTrainer(m, tok, t, cfg, RewardModel.from_pretrained(reward_model), prompt_fn=prompt_fn,
                         accuracy=acc, format_fn=fmt)
    report(trainer.train(), out)


@app.command()
def dpo(task: str = TASK, model: str = MODEL, out: Path = OUT, pairs: Path = PAIRS, steps: int = 100,
        lr: float = 3e-5, beta: float = 0.1, loss_type: str = "sigmoid", batch_size: int = 32, prompts: int = 512,
        generations: int = 8, temperature: float = 1.0, max_new_tokens: int = 16, seed: int = 0,
        template: str = TEMPLATE, eval_rows: int = 200, lora: bool = False, bf16: bool = False,
        gradient_checkpointing: bool = False) -> None:
    """DPO (--loss-type sigmoid | ipo | hinge) on preference pairs; held-out accuracy in eval.json."""
    from bellman.llm.dpo import DPOConfig, DPOTrainer
    m, tok = load(model, seed, lora, bf16, gradient_checkpointing)
    t, prompt_fn, acc, fmt = task_and_template(task, template, seed)
    cfg = DPOConfig(out=str(out), total_steps=steps, learning_rate=lr, beta=beta, loss_type=loss_type,
                    batch_size=batch_size, seed=seed, eval_rows=eval_rows, eval_max_new_tokens=max_new_tokens)
    train = preference_pairs(pairs, m, tok, t, prompt_fn, [fmt, acc] if fmt else t.rewards, prompts,
                             generations, temperature, max_new_tokens, seed)
    report(DPOTrainer(m, tok, t, cfg, train, prompt_fn=prompt_fn, accuracy=acc, format_fn=fmt).train(), out)
