"""Self-speculative decoding against plain decoding: acceptance per head and decoding tokens per second by
batch size, in one process, on the same prompts and seeds.

The policy: the built-in tiny model taught worked column sums (``--model tiny``: SFT here, seeded; answers
of 20-40 tokens) or SmolLM2-135M-Instruct (``--model DIR``, prompts through its chat template). Draft heads
of each ``--kinds`` are trained by self-distillation on the policy's samples of the training prompts (or
loaded with ``--heads-dir``, as ``bellman llm draft`` writes them), then each batch size decodes the
held-out prompts with ``LeanEngine`` (plain) and ``SpeculativeEngine`` (k = K drafts, and k = "auto"),
alternating, best of ``--repeats``. Tokens per second = completion tokens (up to and including EOS) /
seconds of ``generate`` (prefill included). The ratio is speculative / plain; the crossover is the smallest
batch size whose ratio at k = K falls below 1.

    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/speculative.py --model tiny
    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/speculative.py \\
        --model models/smollm2-135m-instruct --kinds mtp --heads-dir runs/spec/smollm2-mtp --batches 1,4,16
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

import torch

from bellman.llm.chat import render_prompt, uses_chat
from bellman.llm.config import DraftConfig, SFTConfig
from bellman.llm.draft import DraftTrainer, draft_heads, load_heads
from bellman.llm.engine import LeanEngine
from bellman.llm.engine.speculative import SpeculativeEngine
from bellman.llm.model import load_model
from bellman.llm.rollout import SamplingConfig
from bellman.llm.sft import SFTTrainer
from bellman.llm.tasks import arithmetic
from bellman.recipes.r1_zero import worked_sum


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip().split("load average:")[-1].strip()


def tiny_policy(seed: int, steps: int):
    """The tiny model taught ``a+b=`` -> its worked column sum (``recipes.r1_zero.worked_sum``)."""
    task = arithmetic(digits=(2, 4), n_train=4000, n_test=200, seed=seed)
    model, tok = load_model("tiny", seed=seed)
    rows = [{"prompt": r["prompt"], "completion": worked_sum(r["prompt"].rstrip("="))} for r in task.train]
    SFTTrainer(model, tok, task, SFTConfig(total_steps=steps, learning_rate=1e-3, batch_size=32, eval_rows=1,
                                           progress=False, seed=seed), rows=rows).train()
    return model.eval(), tok, [r["prompt"] for r in task.train], [r["prompt"] for r in task.test]


def real_policy(path: str, seed: int):
    model, tok = load_model(path, seed=seed)
    task = arithmetic(n_train=2000, n_test=200, seed=seed)
    chat = uses_chat(tok, None)
    prompts = [[render_prompt(tok, r["prompt"], chat) for r in rows] for rows in (task.train, task.test)]
    return model.eval(), tok, *prompts


def timed(engine, prompts, b, s, seed) -> tuple[float, int]:
    """Seconds and completion tokens of decoding ``prompts`` in ``generate`` calls of ``b``."""
    t0, n = time.perf_counter(), 0
    for i in range(0, len(prompts), b):
        n += int(engine.generate(prompts[i:i + b], s, seed=seed + i).completion_mask.sum())
    return time.perf_counter() - t0, n


def grpo(a) -> None:
    """GRPO on the tiny worked-sum policy, plain and speculative sampling, on the same seeds: seconds per
    update and the reward curve (mean of each tenth of the run)."""
    from bellman.llm.grpo import GRPOConfig, GRPOTrainer
    for speculative in (False, True):
        model, tok, _, _ = tiny_policy(a.seed, a.sft_steps)
        task = arithmetic(digits=(2, 4), n_train=4000, n_test=200, seed=a.seed)
        cfg = GRPOConfig.preset("tiny", total_steps=a.grpo_steps, num_generations=8, prompts_per_step=4,
                                max_new_tokens=a.max_new_tokens, beta=0.0, eval_rows=1, progress=False,
                                seed=a.seed, speculative=speculative, draft_heads=a.heads)
        tr = GRPOTrainer(model, tok, task, cfg)
        t0 = time.perf_counter()
        tr.train()
        dt = (time.perf_counter() - t0) / a.grpo_steps
        tenth = max(1, a.grpo_steps // 10)
        curve = [round(sum(h["reward"] for h in tr.history[i:i + tenth]) / tenth, 3)
                 for i in range(0, a.grpo_steps, tenth)]
        acc = [round(tr.history[-1].get(f"acceptance_{j}", float("nan")), 3) for j in range(1, a.heads + 1)]
        print(json.dumps({"speculative": speculative, "seconds_per_update": round(dt, 3), "reward_curve": curve,
                          **({"last_acceptance": acc} if speculative else {})}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grpo", action="store_true", help="GRPO plain vs speculative on the tiny model instead")
    ap.add_argument("--grpo-steps", type=int, default=40)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--kinds", default="mtp,medusa")
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--heads-dir", default=None, help="load the heads from DIR (one kind) instead of training")
    ap.add_argument("--batches", default="1,4,16,64")
    ap.add_argument("--temperatures", default="1,0")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--distill-steps", type=int, default=300)
    ap.add_argument("--sft-steps", type=int, default=600)
    ap.add_argument("--distill-batch", type=int, default=None, help="sampled sequences per distillation update (default 16)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=16, help="held-out prompts decoded at each batch size (at least one batch)")
    ap.add_argument("--vocab", type=int, default=0, help="draft vocabulary of trained heads (DraftConfig.vocab; 0: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"# load before: {load()}", flush=True)
    if a.grpo:
        grpo(a)
        print(f"# load after: {load()}")
        return
    if a.model == "tiny":
        model, tok, train, test = tiny_policy(a.seed, a.sft_steps)
    else:
        model, tok, train, test = real_policy(a.model, a.seed)
    plain = LeanEngine(model, tok)
    rows = []
    for kind in a.kinds.split(","):
        if a.heads_dir:
            heads = load_heads(a.heads_dir, model)
        else:
            heads = draft_heads(model, kind, a.heads)
            t0 = time.perf_counter()
            DraftTrainer(model, tok, heads, DraftConfig(kind=kind, heads=a.heads, total_steps=a.distill_steps,
                                                        learning_rate=3e-3 if a.model == "tiny" else 1e-3,
                                                        batch_size=a.distill_batch or 16, vocab=a.vocab,
                                                        max_new_tokens=a.max_new_tokens, seed=a.seed)).train(train)
            print(f"# {kind}: {a.distill_steps} distillation steps in {time.perf_counter() - t0:.0f} s", flush=True)
        fixed, auto = SpeculativeEngine(model, tok, heads, k=heads.heads), SpeculativeEngine(model, tok, heads)
        for temperature in (float(t) for t in a.temperatures.split(",")):
            s = SamplingConfig(temperature=temperature, max_new_tokens=a.max_new_tokens)
            auto.reset_stats()
            auto.generate(test[:16], s, seed=a.seed)  # measure acceptance before choosing k
            for b in (int(x) for x in a.batches.split(",")):
                m = max(b, a.prompts)  # the same held-out prompts at every batch size, in calls of b
                prompts = (test * (m // len(test) + 1))[:m]
                fixed.reset_stats()
                best = {"plain": (1e9, 0), "spec": (1e9, 0), "auto": (1e9, 0)}
                for r in range(a.repeats):
                    for name, engine in (("plain", plain), ("spec", fixed), ("auto", auto)):
                        dt, n = timed(engine, prompts, b, s, a.seed + 1000 * r)
                        if dt / max(n, 1) < best[name][0] / max(best[name][1], 1):
                            best[name] = (dt, n)
                tps = {k: n / dt for k, (dt, n) in best.items()}
                row = {"model": a.model if a.model == "tiny" else "smollm2", "kind": kind, "T": temperature,
                       "batch": b, "acceptance": [round(x, 3) for x in fixed.acceptance()],
                       "tokens_per_step": round(fixed.tokens_per_step(heads.heads), 2),
                       "plain_tok_s": round(tps["plain"], 1), "spec_tok_s": round(tps["spec"], 1),
                       "ratio": round(tps["spec"] / tps["plain"], 2), "auto_k": auto.draft_length(b),
                       "auto_ratio": round(tps["auto"] / tps["plain"], 2)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    for kind in a.kinds.split(","):
        for temperature in (float(t) for t in a.temperatures.split(",")):
            slower = [r["batch"] for r in rows if r["kind"] == kind and r["T"] == temperature and r["ratio"] < 1]
            print(f"# crossover {kind} T={temperature:g}: "
                  f"{('batch ' + str(min(slower))) if slower else 'none up to batch ' + a.batches.split(',')[-1]}")
    print(f"# load after: {load()}  (cpu {os.sched_getaffinity(0)})")


if __name__ == "__main__":
    main()
