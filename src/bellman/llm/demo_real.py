"""GRPO on a real pretrained model: SmolLM2-135M-Instruct asked 2-digit sums as chat ("What is 16 + 22?"),
held-out greedy accuracy before and after (a few minutes on 2 CPU cores).

``run(out)`` is what a demo calls; it needs the model installed (``make smollm2``) and says so otherwise. The
full measurement, with the figures in benchmarks/RESULTS.md, is ``benchmarks/llm_real.py``.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import torch
from rich.console import Console

from bellman.llm.models import SMOLLM2_DIR, SMOLLM2_INSTALL


def run(out: pathlib.Path, model_dir: str | pathlib.Path = SMOLLM2_DIR, steps: int = 20,
        eval_rows: int = 50) -> dict | None:
    """GRPO (4 prompts x 8 completions of up to 16 tokens, lr 1e-5, the built-in arithmetic reward) for
    ``steps`` updates; prints and returns eval.json (accuracy before / after), or None without the model."""
    from bellman.llm.grpo import GRPOConfig, GRPOTrainer
    from bellman.llm.model import load_model
    from bellman.llm.tasks import arithmetic, question_prompt
    console = Console()
    console.rule("LLM: GRPO on SmolLM2-135M-Instruct (2-digit addition, chat prompts)")
    if not (pathlib.Path(model_dir) / "model.safetensors").is_file():
        console.print(f"SmolLM2-135M-Instruct is not installed at {model_dir}; skipped. Install it with: "
                      f"{SMOLLM2_INSTALL}")
        return None
    shutil.rmtree(out, ignore_errors=True)
    torch.set_num_threads(2)
    model, tok = load_model(model_dir)
    cfg = GRPOConfig(total_steps=steps, learning_rate=1e-5, num_generations=8, prompts_per_step=4,
                     max_new_tokens=16, beta=0.0, eval_rows=eval_rows, eval_max_new_tokens=16, seed=0)
    task = arithmetic(digits=(2, 2), n_train=2000, n_test=eval_rows, seed=0)
    result = GRPOTrainer(model, tok, task, cfg, prompt_fn=question_prompt).train()
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    console.print(f"held-out accuracy  {result['accuracy_before']:.2f} -> {result['accuracy_after']:.2f} "
                  f"({eval_rows} sums, greedy)")
    return result


if __name__ == "__main__":
    run(pathlib.Path("runs/demo_real"))
