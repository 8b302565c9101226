"""The GRPO step's three model passes in two versions of bellman, interleaved in one process.

Loads ``bellman.llm`` from this checkout and from another checkout's ``src`` directory side by side and
times, on the same built-in tiny model and the same GRPO batches (4 prompts x 8 completions of up to 16
tokens, 2-3 digit addition), each version's decoding (the engine's ``generate``), reference forward (no
gradient) and policy forward + backward (shared-prompt log-probs), alternating A/B and B/A call by call,
so that both versions see the same machine. Prints min and median per call and the ratios (B / A) of the medians
and of the totals; this machine's speed drifts too much between runs for separate runs to show a few %.

    git worktree add /tmp/old <commit>
    .venv/bin/python benchmarks/llm_ab.py --other /tmp/old/src [--rounds 20]
"""

from __future__ import annotations

import argparse
import importlib
import random
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

PASSES = ("decoding", "reference forward", "policy forward + backward")


def load(src: Path) -> SimpleNamespace:
    """What this benchmark calls of bellman.llm in ``src``, loaded afresh: load_model, encode_prompts,
    SamplingConfig, arithmetic, and ``engine(model, tok)`` with ``generate(prompts, sampling, seed)`` and
    ``shared(prompt_ids, prompt_mask, completion_ids, completion_mask)`` (shared-prompt log-probs). A
    checkout from before ``bellman.llm.engine`` has these as functions of ``bellman.llm.model`` / ``rollout``."""
    for name in [k for k in sys.modules if k == "bellman" or k.startswith("bellman.")]:
        del sys.modules[name]
    sys.path.insert(0, str(src))
    try:
        def module(name):
            return importlib.import_module(f"bellman.llm.{name}")
        model, rollout, tasks = module("model"), module("rollout"), module("tasks")
        try:
            get_engine, encode_prompts = module("engine").get_engine, module("batching").encode_prompts

            def engine(m, tok):
                e = get_engine(m, tok)
                return SimpleNamespace(generate=e.generate,
                                       shared=lambda *batch: e.logprobs(*batch, shared_prompt=True))
        except ModuleNotFoundError:
            encode_prompts = model.encode_prompts

            def engine(m, tok):
                return SimpleNamespace(generate=lambda *a, **k: rollout.generate(m, tok, *a, **k),
                                       shared=lambda *batch: model.shared_prompt_logprobs(m, *batch))
        return SimpleNamespace(load_model=model.load_model, encode_prompts=encode_prompts, engine=engine,
                               SamplingConfig=rollout.SamplingConfig, arithmetic=tasks.arithmetic)
    finally:
        sys.path.remove(str(src))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", type=Path, required=True, help="the other checkout's src directory (B)")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--batches", type=int, default=8)
    a = ap.parse_args()
    torch.set_num_threads(1)
    versions = {"A (this checkout)": load(Path(__file__).resolve().parents[1] / "src"), "B (--other)": load(a.other)}
    api_a = versions["A (this checkout)"]
    model, tok = api_a.load_model("tiny", seed=0)
    engine_a = api_a.engine(model, tok)
    rows = api_a.arithmetic(digits=(2, 3), n_train=512, n_test=8, seed=0).train
    rng, batches = random.Random(0), []
    for i in range(a.batches):
        picked = rng.sample(rows, 4)
        prompts = [r["prompt"] for r in picked for _ in range(8)]
        ro = engine_a.generate(prompts, api_a.SamplingConfig(temperature=1.0, max_new_tokens=16), seed=i)
        batches.append((prompts, *api_a.encode_prompts(tok, [r["prompt"] for r in picked]),
                        ro.completion_ids, ro.completion_mask))

    def passes(api) -> tuple:
        engine = api.engine(model, tok)

        def decoding(batch):
            model.eval()
            engine.generate(batch[0], api.SamplingConfig(temperature=1.0, max_new_tokens=16), seed=0)
            model.train()

        def reference(batch):
            with torch.inference_mode():
                engine.shared(*batch[1:])

        def policy(batch):
            engine.shared(*batch[1:]).sum().backward()
        return decoding, reference, policy

    fns = {v: passes(api) for v, api in versions.items()}
    times = {(v, p): [] for v in versions for p in PASSES}
    for k in range(a.rounds):
        order = list(versions) if k % 2 == 0 else list(versions)[::-1]
        for batch in batches:
            for j, p in enumerate(PASSES):
                for v in order:
                    t = time.perf_counter()
                    fns[v][j](batch)
                    times[v, p].append(time.perf_counter() - t)
    (va, vb) = versions
    for p in PASSES:
        ta, tb = sorted(times[va, p]), sorted(times[vb, p])
        med_a, med_b = ta[len(ta) // 2], tb[len(tb) // 2]
        print(f"{p:27s} A min {1e3 * ta[0]:6.2f} median {1e3 * med_a:6.2f} ms | B min {1e3 * tb[0]:6.2f} "
              f"median {1e3 * med_b:6.2f} ms | B / A: medians {med_b / med_a:.3f}, totals {sum(tb) / sum(ta):.3f}")


if __name__ == "__main__":
    main()
