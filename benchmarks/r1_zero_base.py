"""What an R1-Zero base model writes before GRPO: greedy and sampled behaviour on the held-out questions.

Reads the base model that ``benchmarks/r1_zero.py --out DIR`` saved in DIR/base/model and prints, over the
recipe's held-out questions (same seed): the greedy completion of the first one; the greedy share whose last
number is the right sum, whose worked sum ends in the right result (``A<digits>``), that close ``</think>``
exactly, and that earn the format reward; then, over ``--samples`` completions at temperature 1, the share
that write an ``<answer>`` tag and that earn the format reward.

    .venv/bin/python benchmarks/r1_zero_base.py --out runs/bench_r1 [--seed 0] [--samples 512]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch

from bellman.llm.engine import get_engine
from bellman.llm.model import load_model
from bellman.llm.r1_zero import prompt
from bellman.recipes.r1_zero import R1ZeroConfig
from bellman.llm.rollout import SamplingConfig
from bellman.llm.tasks import format_reward


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench_r1"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=512)
    a = ap.parse_args()
    test = R1ZeroConfig(seed=a.seed).task().test
    model, tok = load_model(a.out / "base" / "model")
    model.eval()
    engine = get_engine(model, tok)
    prompts = [prompt(r) for r in test]
    greedy = engine.generate(prompts, SamplingConfig(temperature=0.0, max_new_tokens=80)).completions(tok)
    print(f"first held-out question {test[0]['question']}: {greedy[0]!r}")

    def share(flags) -> float:
        flags = list(flags)
        return sum(flags) / len(flags)

    def last(pattern: str, text: str) -> str | None:
        found = re.findall(pattern, text)
        return found[-1] if found else None

    answers = [r["answer"] for r in test]
    last_number = share(last(r"\d+", g) == y for g, y in zip(greedy, answers))
    worked = share(last(r"A(\d+)", g) == y for g, y in zip(greedy, answers))
    print(f"greedy, {len(test)} questions: last number right {last_number:.3f}, worked sum right {worked:.3f}, "
          f"closes </think> {share('</think>' in g for g in greedy):.3f}, "
          f"format reward {share(format_reward(prompts, greedy)):.3f}")
    rows = [prompts[i % len(prompts)] for i in range(a.samples)]
    sampled = []
    for i in range(0, len(rows), 64):
        sampled += engine.generate(rows[i:i + 64], SamplingConfig(temperature=1.0, max_new_tokens=80),
                                   seed=a.seed + i).completions(tok)
    print(f"sampled at temperature 1, {len(rows)} completions: "
          f"<answer> tag {share('<answer>' in s for s in sampled):.3f}, "
          f"format reward {share(format_reward(rows, sampled)):.3f}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
