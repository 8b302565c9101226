"""The weight layout of decoding's matrix products on the CPU: ``F.linear(x, W)`` with W stored (out, in), as
every ``nn.Linear`` keeps it, against ``x @ W^T`` with W^T stored (in, out), the layout
``lean_weights(model, decoding=True)`` copies the decoder's projections into for a ``generate`` call.

Prints (1) GFLOP/s of both layouts on SmolLM2-135M's projection shapes at 8-2,048 rows (best of 5 timings
of repeated products, so the weights sit in cache), then (2) with ``--model``, the wall time of the lean
engine's ``generate`` of ``--prompts`` chat prompts x ``--generations`` completions of up to
``--max-new-tokens`` tokens at temperature 1, alternating the two layouts ``--repeats`` times in one
process (the same seed: the same tokens unless float rounding moves a draw).

    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/decode_layout.py --model models/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F


def best(f, n: int, repeats: int = 5) -> float:
    """Seconds per call of f, the best of ``repeats`` means over n calls."""
    f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            f()
        times.append((time.perf_counter() - t) / n)
    return min(times)


def shapes() -> None:
    print("rows | (in, out) | F.linear, W (out, in) | x @ W^T, W^T (in, out) | ratio")
    for k, n in [(576, 1536), (1536, 576), (576, 576), (576, 192), (576, 49152)]:
        w = torch.randn(n, k)
        wt = w.t().contiguous()
        for m in (1, 2, 3, 4, 8, 32, 64, 2048):
            x = torch.randn(m, k)
            calls = 5 if m == 2048 or n > 10_000 else 50 if m > 4 else 200
            a, b = best(lambda: F.linear(x, w), calls), best(lambda: x @ wt, calls)
            g = 2 * m * k * n / 1e9
            print(f"{m:5d} | ({k}, {n}) | {g / a:6.1f} GFLOP/s | {g / b:6.1f} GFLOP/s | {a / b:.2f}x", flush=True)


def decoding(args: argparse.Namespace) -> None:
    import bellman.llm.engine.lean as lean
    from bellman.core.resources import keep_freed_memory
    from bellman.llm.engine import get_engine
    from bellman.llm.model import load_model
    from bellman.llm.rollout import SamplingConfig

    keep_freed_memory()
    model, tok = load_model(args.model)
    model.eval()
    engine = get_engine(model, tok)
    chat = [tok.apply_chat_template([{"role": "user", "content": f"What is {10 + i} + {20 + 2 * i}?"}],
                                    tokenize=False, add_generation_prompt=True) for i in range(args.prompts)]
    prompts = [q for q in chat for _ in range(args.generations)]
    s = SamplingConfig(temperature=1.0, max_new_tokens=args.max_new_tokens)
    built = lean.lean_weights
    engine.generate(prompts[:8], SamplingConfig(temperature=1.0, max_new_tokens=8), seed=0)
    times = {False: [], True: []}
    for _ in range(args.repeats):
        for transposed in (False, True):
            lean.lean_weights = lambda m, decoding=False, _t=transposed: built(m, decoding=_t)
            t = time.perf_counter()
            ro = engine.generate(prompts, s, seed=1)
            times[transposed].append(time.perf_counter() - t)
            print(f"{'x @ W^T ' if transposed else 'F.linear'}: {times[transposed][-1]:.2f} s, "
                  f"{int(ro.completion_mask.sum())} tokens", flush=True)
    lean.lean_weights = built
    a, b = sum(times[False]) / args.repeats, sum(times[True]) / args.repeats
    print(f"generate, mean of {args.repeats}: F.linear {a:.2f} s, x @ W^T {b:.2f} s: {a / b:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a model directory: also time generate with both layouts")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 1)))
    shapes()
    if args.model:
        decoding(args)


if __name__ == "__main__":
    main()
