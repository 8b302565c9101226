"""A short R1-Zero run on the built-in tiny model: accuracy and format reward before and after.

``make demo`` calls ``run(out)``. The base model is taught plain worked arithmetic and generic text (no
template), then GRPO with the R1-Zero format + accuracy rewards. This short run (about four CPU minutes)
shows the pipeline end to end; its base model is far too young to copy the template's tags (that appears
after about 1000 pretraining steps), so expect format and accuracy near 0. The full recipe is
``bellman llm r1-zero --out runs/r1`` (see benchmarks/RESULTS.md, "LLM: R1-Zero and GRPO").
"""

from __future__ import annotations

import pathlib
from dataclasses import replace

import torch
from rich.console import Console

from bellman.llm.r1_zero import R1ZeroConfig, run as run_r1_zero

DEMO = R1ZeroConfig(pretrain_steps=120)


def run(out: pathlib.Path) -> dict:
    """Run the short recipe into ``out``; print and return eval.json (accuracy/format before and after)."""
    torch.set_num_threads(1)
    console = Console()
    console.rule("LLM: R1-Zero on the tiny model (2-3 digit addition)")
    c = replace(DEMO, n_test=50, grpo=replace(DEMO.grpo, total_steps=10, eval_rows=50))
    result = run_r1_zero(out, c)
    console.print(f"format reward  {result['format_before']:.2f} -> {result['format_after']:.2f}")
    console.print(f"accuracy       {result['accuracy_before']:.2f} -> {result['accuracy_after']:.2f}")
    return result


if __name__ == "__main__":
    run(pathlib.Path("runs/demo_llm"))
