"""R1-Zero on the built-in tiny model, 2-3 digit addition, fixed seed, from a random model to the end.

The tiny base model is first taught plain worked arithmetic plus generic text (never the template), then
trained with GRPO on the R1-Zero format + accuracy rewards. Prints format reward and held-out accuracy before
and after, the wall-clock seconds of each phase and the process's CPU seconds (torch pinned to
``--threads`` threads, 2 by default: the target is under 10 minutes on 2 CPU cores).

    .venv/bin/python benchmarks/r1_zero.py --out runs/bench_r1 [--threads 2] [--seed 0] [--pretrain-steps N] [--grpo-steps M] [--base DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from bellman.recipes.r1_zero import R1ZeroConfig, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench_r1"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pretrain-steps", type=int, default=R1ZeroConfig.pretrain_steps)
    ap.add_argument("--grpo-steps", type=int, default=R1ZeroConfig().grpo.total_steps)
    ap.add_argument("--base", default="tiny", help="tiny (pretrain the base first) or a base model directory")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    c = R1ZeroConfig(seed=a.seed, pretrain_steps=a.pretrain_steps, base_model=a.base)
    c.grpo = replace(c.grpo, total_steps=a.grpo_steps, progress=False)
    wall, cpu = time.perf_counter(), time.process_time()
    r = run(a.out, c)
    r |= {"wall_seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}
    print(json.dumps(r, indent=2))
    print(f"format reward   {r['format_before']:.3f} -> {r['format_after']:.3f}")
    print(f"accuracy        {r['accuracy_before']:.3f} -> {r['accuracy_after']:.3f} "
          f"({100 * (r['accuracy_after'] - r['accuracy_before']):+.1f} points)")
    print(f"wall {r['wall_seconds']:.0f} s, cpu {r['cpu_seconds']:.0f} s on {a.threads} threads")


if __name__ == "__main__":
    main()
