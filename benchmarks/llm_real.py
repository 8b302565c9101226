"""Learning on a real model: SmolLM2-135M-Instruct on 2-digit addition asked as chat ("What is 16 + 22?"), through
the trainers and the built-in rewards (the final number of the reply, or its answer tag / boxed answer).

    python benchmarks/llm_real.py grpo            # held-out greedy accuracy before -> after GRPO
    python benchmarks/llm_real.py grpo --digits 2 3
    python benchmarks/llm_real.py r1              # R1-Zero tags in the chat prompt: format reward before -> after
    python benchmarks/llm_real.py dpo             # DPO on the model's own correct-vs-wrong samples

Fixed seeds; float32 on the CPU. Each prints eval.json (accuracy / format before and after), the wall time and
the load average, and writes runs/real_<kind>/ (metrics.csv, eval.json; the model is not kept).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bellman.llm.model import load_model  # noqa: E402
from bellman.llm.tasks import arithmetic, format_reward, question_prompt  # noqa: E402

SMOLLM2 = Path(os.environ.get("BELLMAN_SMOLLM2", Path(__file__).resolve().parents[1] / "models/smollm2-135m-instruct"))
R1_CHAT = ("{question} Think it through inside <think> </think>, then give only the number inside "
           "<answer> </answer>.")


def r1_prompt(row: dict) -> str:
    """The R1-Zero instruction as a chat question: reason in <think>, answer in <answer>."""
    return R1_CHAT.format(question=question_prompt(row))


def r1_accuracy(prompts, completions, answer, **_):
    """The arithmetic reward on completions that use the answer tag (R1-Zero's accuracy reward)."""
    from bellman.llm.r1_zero import accuracy_reward
    return accuracy_reward(prompts, completions, answer)


def task(args):
    lo, hi = args.digits
    return arithmetic(digits=(lo, hi), n_train=2000, n_test=args.eval_rows, seed=0)


def grpo(args, out: Path) -> dict:
    from bellman.llm.grpo import GRPOConfig, GRPOTrainer
    model, tok = load_model(SMOLLM2)
    r1 = args.kind == "r1"
    cfg = GRPOConfig(total_steps=args.steps, learning_rate=args.lr, num_generations=args.generations,
                     prompts_per_step=args.prompts, max_new_tokens=args.new_tokens, beta=args.beta,
                     temperature=1.0, eval_rows=args.eval_rows, eval_max_new_tokens=args.new_tokens,
                     checkpoint_every=10_000, seed=0, progress=False, loss_type=args.loss_type)
    t = task(args)
    if r1:
        trainer = GRPOTrainer(model, tok, t, cfg, rewards=[format_reward, r1_accuracy], prompt_fn=r1_prompt,
                              accuracy=r1_accuracy, format_fn=format_reward)
    else:
        trainer = GRPOTrainer(model, tok, t, cfg, prompt_fn=question_prompt)
    return run(trainer, out)


def run(trainer, out: Path) -> dict:
    """Train in memory (no 540 MB weights or 1.6 GB checkpoints written); write the per-step metrics and
    eval.json to ``out``."""
    result = trainer.train()
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    (out / "history.json").write_text(json.dumps(trainer.history))
    for k in ("reward", "accuracy", "reward_format_reward", "pref_accuracy"):
        if k in trainer.history[0]:
            v = [h[k] for h in trainer.history]
            tenth = max(1, len(v) // 10)
            print(f"{k} per tenth of the run: " + " ".join(f"{sum(v[i:i + tenth]) / len(v[i:i + tenth]):.2f}"
                                                            for i in range(0, len(v), tenth)), flush=True)
    return result


def dpo(args, out: Path) -> dict:
    from bellman.llm.dpo import DPOConfig, DPOTrainer
    from bellman.llm.pairs import sample_preference_pairs
    from bellman.llm.rollout import SamplingConfig
    model, tok = load_model(SMOLLM2)
    t = task(args)
    t0 = time.perf_counter()
    pairs = sample_preference_pairs(model, tok, t.train[:args.pair_prompts], t.rewards, args.generations,
                                    SamplingConfig(temperature=1.0, max_new_tokens=args.new_tokens), seed=0,
                                    prompt_fn=question_prompt)
    print(f"{len(pairs)} pairs from {args.pair_prompts} prompts x {args.generations} in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    cfg = DPOConfig(total_steps=args.steps, learning_rate=args.lr, beta=0.1, batch_size=args.prompts,
                    eval_rows=args.eval_rows, eval_max_new_tokens=args.new_tokens, checkpoint_every=10_000, seed=0,
                    progress=False)
    trainer = DPOTrainer(model, tok, t, cfg, pairs, prompt_fn=question_prompt)
    return run(trainer, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kind", choices=["grpo", "r1", "dpo"])
    ap.add_argument("--digits", type=int, nargs=2, default=(2, 2))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--prompts", type=int, default=4, help="prompts per step (DPO: pairs per step)")
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--beta", type=float, default=0.0)
    ap.add_argument("--loss-type", default="grpo")
    ap.add_argument("--eval-rows", type=int, default=100)
    ap.add_argument("--pair-prompts", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path("runs") / f"real_{args.kind}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    result = (dpo if args.kind == "dpo" else grpo)(args, out)
    print(json.dumps(result), flush=True)
    print(f"{args.kind}: {time.perf_counter() - t0:.0f} s wall, load average {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
