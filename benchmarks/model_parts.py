"""What the built-in model's parts do (``bellman.llm.nn``), measured on a task the tiny model learns in a minute.

The task is a stream of one-digit additions, "<bos>3+5=08;7+9=16;...", cut at a length; the model is
trained as a language model on every token, and judged on the answer tokens (the sum's digits and the ";" after it,
which only the problem before them determines): their mean cross-entropy ("answer loss") and the share
of problems whose answer tokens are all argmax-correct under teacher forcing ("accuracy"; for every
method but dynamic NTK this is what greedy decoding gives).

    python benchmarks/model_parts.py extrapolation  # train at L = 64 tokens, evaluate at 2L and 4L, 7 methods
    python benchmarks/model_parts.py activations    # relu / gelu / silu / swiglu / geglu x bias, 3 seeds
    python benchmarks/model_parts.py linear         # softmax vs linear attention: accuracy on one budget
    python benchmarks/model_parts.py decoding       # decoding tokens / s at contexts 256, 1k, 4k
    python benchmarks/model_parts.py grpo           # GRPO on a softmax and a linear-attention policy

Each writes benchmarks/model_parts/<name>.json (and a .png where there is a plot) and prints a markdown
table. One torch thread; ``--steps`` / ``--seeds`` shrink a run.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bellman.llm.model import TinyConfig, tiny_model
from bellman.llm.nn import ModelParts
from bellman.llm.rope import apply_rope_scaling

OUT = Path(__file__).resolve().parent / "model_parts"
SMALL = dict(hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4)
L = 64  # the trained length


def load() -> str:
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


# ---- the task


def stream(rng: random.Random, tok, length: int, digits: int = 1) -> tuple[list[int], list[int]]:
    """Token ids of "<bos>3+5=08;7+1=08;..." (operands of ``digits`` digits, sums of digits + 1, zero-padded)
    cut at ``length``, and per token the index of the problem whose answer it is (-1: not an answer token,
    or a problem cut short)."""
    ids, problem, k = [tok.bos_token_id], [-1], 0
    while len(ids) < length:
        a, b = rng.randint(0, 10 ** digits - 1), rng.randint(0, 10 ** digits - 1)
        q = tok(f"{a:0{digits}d}+{b:0{digits}d}=", add_special_tokens=False)["input_ids"]
        ans = tok(f"{a + b:0{digits + 1}d};", add_special_tokens=False)["input_ids"]
        ids += q + ans
        problem += [-1] * len(q) + [k] * len(ans)
        k += 1
    ids, problem = ids[:length], problem[:length]
    if problem[-1] != -1:  # the last problem's answer is cut: not counted
        last = problem[-1]
        problem = [-1 if p == last else p for p in problem]
    return ids, problem


def batch(seed: int, tok, n: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = random.Random(seed)
    rows = [stream(rng, tok, length) for _ in range(n)]
    return torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])


def train(model, tok, steps: int, seed: int, lr: float = 3e-3, batch_size: int = 16) -> list[float]:
    """AdamW on next-token cross-entropy over every token of L-token streams; linear warm-up of 50 steps,
    then cosine decay. Returns the per-step answer loss."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    model.train()
    history = []
    for step in range(steps):
        ids, problem = batch(10_000 * seed + step, tok, batch_size, L)
        logits = model(input_ids=ids, use_cache=False).logits[:, :-1]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
        loss.mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        answer = (problem[:, 1:] >= 0).reshape(-1)
        history.append(loss.detach()[answer].mean().item())
    return history


def evaluate(model, ids: torch.Tensor, problem: torch.Tensor, chunk: int = 0) -> dict:
    """Answer loss per position (B, T - 1; nan off answers), and per problem whether it is all correct.
    ``chunk`` > 0 reads positions chunk by chunk from forwards of the prefix ending there (dynamic NTK
    then scales by each prefix's length, as it does while decoding)."""
    model.eval()
    with torch.no_grad():
        if chunk:
            parts = [model(input_ids=ids[:, :end], use_cache=False).logits[:, -chunk:]
                     for end in range(chunk, ids.shape[1] + 1, chunk)]
            logits = torch.cat(parts, 1)[:, :-1]
        else:
            logits = model(input_ids=ids, use_cache=False).logits[:, :-1]
    target, prob = ids[:, 1:], problem[:, 1:]
    loss = F.cross_entropy(logits.transpose(1, 2).float(), target, reduction="none")
    right = logits.argmax(-1) == target
    answer = prob >= 0
    per_pos = torch.where(answer, loss, torch.nan)
    solved = {}  # (row, problem) -> (all right, end position)
    for r, c in answer.nonzero().tolist():
        key = (r, int(prob[r, c]))
        ok, _ = solved.get(key, (True, 0))
        solved[key] = (ok and bool(right[r, c]), c + 1)
    return {"loss": per_pos, "problems": list(solved.values())}


def accuracy(problems: list[tuple[bool, int]], lo: int, hi: int) -> float:
    inside = [ok for ok, end in problems if lo <= end < hi]
    return sum(inside) / max(len(inside), 1)


def answer_loss(loss: torch.Tensor, lo: int, hi: int) -> float:
    part = loss[:, lo:hi]
    return part[~part.isnan()].mean().item()


# ---- length extrapolation

METHODS = ("plain RoPE", "PI", "NTK", "dynamic NTK", "YaRN", "log-n", "NTK + log-n")


def extended(model, method: str, s: float):
    """The trained model with a length extrapolation method for the factor s (a copy; no training)."""
    m = copy.deepcopy(model)
    scaling = {"plain RoPE": "none", "PI": "linear", "NTK": "ntk", "dynamic NTK": "dynamic-ntk", "YaRN": "yarn",
               "log-n": "none", "NTK + log-n": "ntk"}[method]
    factor = 1.0 if scaling == "none" or method == "dynamic NTK" else s  # dynamic: scale n / L at length n
    return apply_rope_scaling(m, scaling, factor, logn="log-n" in method)


def extrapolation(a) -> dict:
    model, tok = tiny_model(TinyConfig(**SMALL, max_position_embeddings=L), seed=0)
    t0 = time.perf_counter()
    history = train(model, tok, a.steps, seed=0)
    train_s = time.perf_counter() - t0
    results = {"trained": {"L": L, "steps": a.steps, "train_s": round(train_s, 1),
                           "final_answer_loss": sum(history[-50:]) / 50, "load": load()}, "methods": {}}
    curves = {}
    for length in (2 * L, 4 * L):
        ids, problem = batch(999, tok, a.eval_rows, length)
        for method in METHODS:
            m = extended(model, method, length / L)
            ev = evaluate(m, ids, problem, chunk=16 if method == "dynamic NTK" else 0)
            row = {"acc <L": accuracy(ev["problems"], 0, L), "acc L-2L": accuracy(ev["problems"], L, 2 * L),
                   "loss <L": answer_loss(ev["loss"], 0, L), "loss L-2L": answer_loss(ev["loss"], L, 2 * L)}
            if length == 4 * L:
                row |= {"acc 2L-4L": accuracy(ev["problems"], 2 * L, 4 * L),
                        "loss 2L-4L": answer_loss(ev["loss"], 2 * L, 4 * L)}
                per_pos = torch.cat([ev["loss"], torch.full((ids.shape[0], 1), torch.nan)], 1)  # (B, T)
                curves[method] = torch.nanmean(per_pos.unflatten(1, (-1, 8)), dim=(0, 2)).tolist()
            results["methods"].setdefault(method, {})[f"eval {length}"] = row
    results["curve_4L"] = curves
    plot_curves(curves, OUT / "extrapolation.png")
    return results


def plot_curves(curves: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for method, ys in curves.items():
        ax.plot([8 * i + 4 for i in range(len(ys))], ys, label=method, lw=1.6)
    for x, name in ((L, "L"), (2 * L, "2L")):
        ax.axvline(x, color="grey", ls="--", lw=0.8)
        ax.text(x + 2, ax.get_ylim()[1] * 0.95, name, color="grey")
    ax.set(xlabel="position (8-token bins)", ylabel="answer-token cross-entropy (nats)", yscale="log",
           title=f"Tiny model trained on {L}-token addition streams, evaluated at 4L = {4 * L} tokens")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ---- activations and bias

ACTIVATIONS = ("relu", "gelu", "silu", "swiglu", "geglu")


def activations(a) -> dict:
    """Each activation with and without bias, the same steps and about the same parameters (a plain MLP
    3/2 as wide as a gated one: Shazeer 2020's matching)."""
    results = {"steps": a.steps, "seeds": a.seeds, "load_start": load(), "runs": {}}
    ids, problem = batch(999, tiny_model(TinyConfig(**SMALL))[1], a.eval_rows, L)
    for act in ACTIVATIONS:
        width = 192 if act in ("swiglu", "geglu") else 288
        for bias in (False, True):
            runs = []
            for seed in range(a.seeds):
                model, tok = tiny_model(TinyConfig(**{**SMALL, "intermediate_size": width}, max_position_embeddings=L),
                                        seed=seed, parts=ModelParts(activation=act, bias=bias))
                t0 = time.perf_counter()
                history = train(model, tok, a.steps, seed=seed)
                ev = evaluate(model, ids, problem)
                runs.append({"final_answer_loss": sum(history[-50:]) / 50, "accuracy": accuracy(ev["problems"], 0, L),
                             "eval_answer_loss": answer_loss(ev["loss"], 0, L),
                             "params": sum(p.numel() for p in model.parameters()),
                             "train_s": round(time.perf_counter() - t0, 1)})
                print(act, bias, seed, runs[-1], flush=True)
            results["runs"][f"{act} bias={bias}"] = runs
    results["load_end"] = load()
    return results


# ---- linear attention

ATTENTIONS = {"softmax": dict(), "linear elu": dict(attention="linear"),
              "linear elu, rms norm": dict(attention="linear", linear_norm="rms"),
              "linear performer": dict(attention="linear", feature_map="performer"),
              "linear cosformer": dict(attention="linear", feature_map="cosformer")}


def linear(a) -> dict:
    results = {"steps": a.steps, "seeds": a.seeds, "load_start": load(), "runs": {}}
    ids, problem = batch(999, tiny_model(TinyConfig(**SMALL))[1], a.eval_rows, L)
    for name, switches in ATTENTIONS.items():
        runs = []
        for seed in range(a.seeds):
            model, tok = tiny_model(TinyConfig(**SMALL, max_position_embeddings=L), seed=seed,
                                    parts=ModelParts(**switches))
            t0 = time.perf_counter()
            history = train(model, tok, a.steps, seed=seed)
            ev = evaluate(model, ids, problem)
            runs.append({"final_answer_loss": sum(history[-50:]) / 50, "accuracy": accuracy(ev["problems"], 0, L),
                         "eval_answer_loss": answer_loss(ev["loss"], 0, L),
                         "train_s": round(time.perf_counter() - t0, 1)})
            print(name, seed, runs[-1], flush=True)
        results["runs"][name] = runs
    results["load_end"] = load()
    return results


def decoding(a) -> dict:
    """Decoding tokens / s after a context of C tokens: batch 4, 32 new tokens through the model's own
    forward and cache (the HF engine's loop), best of 3; the default tiny size (hidden 128, 4 layers).
    Softmax attention reads C keys per step (and the cache appends to them), linear attention a (d, d)
    state."""
    results = {"load_start": load(), "rows": {}}
    kinds = {"softmax (BellmanForCausalLM)": dict(activation="relu"),
             "softmax (LlamaForCausalLM)": dict(),
             "linear elu (BellmanForCausalLM)": dict(attention="linear", activation="relu")}
    b, new = 4, 32
    for name, switches in kinds.items():
        model, _ = tiny_model(TinyConfig(max_position_embeddings=4096 + new), seed=0, parts=ModelParts(**switches))
        model.eval()
        for ctx in (256, 1024, 4096):
            ids = torch.randint(4, 90, (b, ctx), generator=torch.Generator().manual_seed(0))
            best = math.inf
            with torch.inference_mode():
                for _ in range(3):
                    cache = None
                    for start in range(0, ctx, 512):  # the context in blocks of 512 (bounded memory)
                        block = ids[:, start:start + 512]
                        pos = torch.arange(start, start + block.shape[1])[None].expand(b, -1)
                        out = model(input_ids=block, position_ids=pos, cache=cache,
                                    use_cache=True, logits_to_keep=1)
                        cache = out.cache
                    nxt = out.logits.argmax(-1)
                    t0 = time.perf_counter()
                    for t in range(new):
                        pos = torch.full((b, 1), ctx + t)
                        out = model(input_ids=nxt, position_ids=pos, cache=cache, use_cache=True)
                        nxt, cache = out.logits[:, -1:].argmax(-1), out.cache
                    best = min(best, time.perf_counter() - t0)
            results["rows"].setdefault(name, {})[ctx] = b * new / best
            print(name, ctx, round(b * new / best, 1), flush=True)
    results["load_end"] = load()
    plot_decoding(results["rows"], OUT / "decoding.png")
    return results


def plot_decoding(rows: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in rows.items():
        ax.plot(list(r), list(r.values()), marker="o", label=name)
    ax.set(xscale="log", xlabel="context (tokens)", ylabel="decoded tokens / s (batch 4)",
           title="Decoding speed against context, tiny model, 1 CPU thread")
    ax.set_xticks([256, 1024, 4096], ["256", "1k", "4k"])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def grpo(a) -> dict:
    """GRPO (DAPO loss, dynamic sampling) with a toy reward, the share of "7"s among the first four
    characters, on a softmax and a linear-attention policy: mean reward of the first and last 5 steps."""
    from bellman.llm.grpo import GRPOConfig, GRPOTrainer
    from bellman.llm.tasks import Task, arithmetic

    def sevens(prompts, completions, **_):
        return [c[:4].count("7") / 4 for c in completions]

    t = arithmetic(digits=(1, 2), n_train=40, n_test=4, seed=0)
    results = {"steps": a.steps, "load_start": load(), "runs": {}}
    for name, switches in (("softmax", {}), ("linear elu", dict(attention="linear"))):
        model, tok = tiny_model(TinyConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=2), seed=0, parts=ModelParts(**switches))
        cfg = GRPOConfig(learning_rate=5e-3, num_generations=8, prompts_per_step=4, max_new_tokens=4, beta=0.0,
                         total_steps=a.steps, eval_rows=4, eval_max_new_tokens=4, progress=False,
                         loss_type="dapo", eps_high=0.28, dynamic_sampling=True)
        t0 = time.perf_counter()
        tr = GRPOTrainer(model, tok, Task("sevens", t.train, t.test, accuracy=sevens), cfg)
        tr.train()
        rewards = [h["reward"] for h in tr.history]
        results["runs"][name] = {"steps": len(rewards), "first 5": sum(rewards[:5]) / 5,
                                 "last 5": sum(rewards[-5:]) / 5, "engine": type(tr.engine).__name__,
                                 "train_s": round(time.perf_counter() - t0, 1)}
        print(name, results["runs"][name], flush=True)
    results["load_end"] = load()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("extrapolation", "activations", "linear", "decoding", "grpo"))
    ap.add_argument("--steps", type=int, default=0,
                    help="training steps (default: 1500 extrapolation, 250 activations, 500 linear)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--eval-rows", type=int, default=64)
    a = ap.parse_args()
    a.steps = a.steps or {"extrapolation": 1500, "activations": 250, "linear": 500, "decoding": 0, "grpo": 30}[a.what]
    torch.set_num_threads(1)
    OUT.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    results = globals()[a.what](a)
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    (OUT / f"{a.what}.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1)[:4000])


if __name__ == "__main__":
    main()
