"""Peak memory of one GRPO step at real vocabulary sizes: SmolLM2-135M-Instruct (V = 49,152) and a 2-layer model
with Qwen2.5's 151,936-token vocabulary (random weights, Qwen2.5-0.5B's widths, built from a config).

One step = sampling B completions of T new tokens (EOS suppressed so every completion is T tokens long), the
rewards, and the log-prob pass with its backward (micro-batches of --micro completions) and the optimiser update.
The figure is the process's peak resident memory during the step minus its resident memory before it, with the
weights, their gradients' buffers and the AdamW state already allocated (a warm-up update with zero gradients
allocates the state without changing a weight). "dense" runs the log-prob passes as one dense
(micro-batch x T x V) logits + log-softmax (what they did before ``logprobs.head_logprobs``); "chunked" is the
default. Decoding keeps only the drawn tokens' log-probs in both.

    python benchmarks/llm_memory.py                        # both models, 64 x 256, chunked and dense
    python benchmarks/llm_memory.py --models qwen-vocab --completions 32 --modes chunked
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bellman.llm import logprobs  # noqa: E402
from bellman.llm.grpo import GRPOConfig, GRPOTrainer  # noqa: E402
from bellman.llm.tasks import arithmetic  # noqa: E402

SMOLLM2 = Path(os.environ.get("BELLMAN_SMOLLM2", Path(__file__).resolve().parents[1] / "models/smollm2-135m-instruct"))


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    """Linux: writing 5 to clear_refs resets the peak resident set size (VmHWM) to the current one."""
    Path("/proc/self/clear_refs").write_text("5")


def qwen_vocab_model():
    from transformers import AutoModelForCausalLM, Qwen2Config
    from bellman.llm.model import char_tokenizer
    cfg = Qwen2Config(vocab_size=151_936, hidden_size=896, intermediate_size=4864, num_hidden_layers=2,
                      num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32_768,
                      tie_word_embeddings=True, rope_theta=1e6, attn_implementation="sdpa")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
    tok = char_tokenizer()  # prompts are characters; the model samples any of its 151,936 ids
    return model, tok


def load(name: str):
    if name == "qwen-vocab":
        return qwen_vocab_model()
    from bellman.llm.model import load_model
    if not (SMOLLM2 / "model.safetensors").is_file():
        raise SystemExit(f"SmolLM2 is not installed at {SMOLLM2}: run `make smollm2`")
    return load_model(SMOLLM2)


class NoEOS:
    """The tokenizer with an EOS id no model here samples: every completion runs to max_new_tokens."""

    def __init__(self, tok, eos: int) -> None:
        self._tok, self.eos_token_id = tok, eos

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def __call__(self, *a, **k):
        return self._tok(*a, **k)


def one_step(name: str, mode: str, b: int, t: int, micro: int) -> dict:
    model, tok = load(name)
    vocab = model.config.vocab_size
    params = sum(p.numel() for p in model.parameters())
    g = 8
    cfg = GRPOConfig(learning_rate=1e-6, num_generations=g, prompts_per_step=b // g, max_new_tokens=t,
                     micro_batch_size=micro, beta=0.0, progress=False, chat_template=False, total_steps=2)
    task = arithmetic(digits=(2, 2), n_train=64, n_test=8)
    trainer = GRPOTrainer(model, tok, task, cfg)
    trainer.tok = trainer.engine.tok = NoEOS(tok, vocab + 1)  # an id past the vocabulary is never drawn
    for p in trainer.params:  # allocate the AdamW state (zero gradients leave the weights as they are)
        p.grad = torch.zeros_like(p)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=False)
    if mode == "dense":
        logprobs.LOGITS_BUDGET = 1 << 62
    before = rss_kib("VmRSS")
    reset_peak()
    t0 = time.perf_counter()
    m = trainer.train_step(0)
    seconds = time.perf_counter() - t0
    peak = rss_kib("VmHWM")
    return {"model": name, "vocab": vocab, "params": params, "mode": mode, "B": b, "T": t, "micro": micro,
            "base_MiB": before / 1024, "step_peak_extra_MiB": (peak - before) / 1024, "seconds": seconds,
            "completion_length": m["completion_length"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["smollm2", "qwen-vocab"])
    ap.add_argument("--modes", nargs="+", default=["chunked", "dense"])
    ap.add_argument("--completions", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--micro", type=int, default=16, help="completions per forward / backward")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if len(args.models) * len(args.modes) > 1:  # one measurement per process: peaks do not carry over
        import subprocess
        for name in args.models:
            for mode in args.modes:
                subprocess.run([sys.executable, __file__, "--models", name, "--modes", mode, "--completions",
                                str(args.completions), "--new-tokens", str(args.new_tokens), "--micro",
                                str(args.micro), "--threads", str(args.threads)], check=True)
        return
    r = one_step(args.models[0], args.modes[0], args.completions, args.new_tokens, args.micro)
    logits = r["micro"] * r["T"] * r["vocab"] * 4 / 2**20
    print(f"{r['model']:10s} V={r['vocab']:>7,} params={r['params'] / 1e6:.0f}M {r['mode']:7s} "
          f"B={r['B']} T={r['T']} micro={r['micro']}: base {r['base_MiB']:.0f} MiB, step peak +"
          f"{r['step_peak_extra_MiB']:.0f} MiB (one micro-batch's float32 logits: {logits:.0f} MiB), "
          f"{r['seconds']:.0f} s, completion length {r['completion_length']:.0f}, load {os.getloadavg()[0]:.1f}",
          flush=True)


if __name__ == "__main__":
    main()
