"""The R1-Zero recipe on the built-in tiny model: accuracy and format reward before and after.

``make demo`` calls ``run(out)``: the whole recipe with ``R1ZeroConfig``'s defaults (about five minutes on
2 CPU cores). The base model is taught plain worked arithmetic and generic text (no template); it writes
its work, closes ``</think>`` and gives the bare result, so format and accuracy start at or near 0. GRPO with the
R1-Zero format + accuracy rewards then teaches it to put the result in ``<answer>...</answer>``.
The same from the command line: ``bellman llm r1-zero --out runs/r1`` (benchmarks/RESULTS.md,
"LLM: R1-Zero and GRPO").
"""

from __future__ import annotations

import pathlib
import shutil

import torch
from rich.console import Console

from bellman.recipes.r1_zero import R1ZeroConfig, run as run_r1_zero


def run(out: pathlib.Path) -> dict:
    """Run the recipe from scratch into ``out`` (a previous demo's files there are removed first, so that its
    checkpoints are not resumed); print and return eval.json (accuracy/format before and after)."""
    shutil.rmtree(out, ignore_errors=True)
    torch.set_num_threads(2)
    console = Console()
    console.rule("LLM: R1-Zero on the tiny model (2-3 digit addition)")
    result = run_r1_zero(out, R1ZeroConfig())
    console.print(f"format reward  {result['format_before']:.2f} -> {result['format_after']:.2f}")
    console.print(f"accuracy       {result['accuracy_before']:.2f} -> {result['accuracy_after']:.2f}")
    return result


if __name__ == "__main__":
    run(pathlib.Path("runs/demo_llm"))
