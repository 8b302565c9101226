"""bellman vs TRL on CPU: GRPO and DPO throughput on the same model, task, batch and lengths.

Both libraries train the built-in tiny Llama (saved with save_pretrained to a temp dir and loaded from
there by TRL), or with ``--model DIR`` a real one (SmolLM2-135M-Instruct: ``--model
models/smollm2-135m-instruct``, asked "What is 16 + 22?" as a chat user message on both sides: bellman
renders it with the tokenizer's chat template, TRL gets conversational prompts), in one process, with the
same settings: GRPO with P prompts x G generations per step,
max_new_tokens completion tokens, temperature 1, beta, one update per batch, "grpo" loss aggregation;
DPO with B pairs per step, beta 0.1, sigmoid loss. Gradient checkpointing off and float32 on both sides.
The timed part is the training loop (TRL's ``trainer.train()``, bellman's ``trainer.train()`` with
evaluation reduced to one greedy token on one row); construction (dataset tokenisation, model copies)
is excluded on both sides. Each side runs ``--repeats`` times, alternating, and the best time is kept.
Each GRPO run also reports its time per step after its first ``--warmup`` steps (default 1), from the end
of every optimiser step (TRL: a ``TrainerCallback``; bellman: around ``train_step``): a process's first
steps also pay for touching memory for the first time, which the steps after reuse, so the whole-run
figure of a short run mixes the two. bellman's run also prints the largest difference between its sampler's
log-probs and its training pass's over the run's tokens.
``--phases`` adds one more GRPO run per side that times its parts (sampling, log-prob forwards, backward,
AdamW step) by wrapping the functions that do them, and prints their median cost per step.
``--kernels`` times, alone and interleaved (min and median of 25 calls), bellman's decoding of one GRPO
batch through its lean forward, through the Hugging Face forward and by ``model.generate``, and one DPO
policy forward + backward through the lean shared-prompt path, the Hugging Face one and a plain forward of
the repeated prompts.

    .venv/bin/python benchmarks/llm_vs_trl.py --steps 10 --repeats 3
    .venv/bin/python benchmarks/llm_vs_trl.py --only grpo --steps 20 --repeats 1 --phases
    .venv/bin/python benchmarks/llm_vs_trl.py --only grpo --steps 3 --repeats 0 --phases   # the parts only
    .venv/bin/python benchmarks/llm_vs_trl.py --kernels --steps 0
    .venv/bin/python benchmarks/llm_vs_trl.py --model models/smollm2-135m-instruct --prompts 8 --generations 8 \
        --max-new-tokens 64 --steps 3 --repeats 1 --bound

bellman's trainers make the C allocator keep freed memory (``TrainerConfig.keep_freed_memory``, on by
default; process-wide, ``bellman.core.resources.keep_freed_memory``). TRL runs first in every repeat, so its
first run of each kind has the C library's defaults and the runs after bellman's first have bellman's
setting, TRL's included; ``--same-allocator`` sets it before anything runs, for both sides alike (the ratio
of the code alone).

``--bound`` prints a GRPO step's compute bound beside its time: the floating-point operations of the
step's matrix products (the decoder's linear maps and attention over every position, the output head at
completion positions only; each prompt once; sampling, the policy's forward and backward, the reference's
forward when beta > 0) divided by this machine's matrix-multiply throughput, measured here with
``torch.mm`` at the same thread count on a training-sized product (2048 x d by d x 4d).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch


def tiny_dir(root: Path) -> Path:
    from bellman.llm.model import load_model
    model, tok = load_model("tiny", seed=0)
    model.save_pretrained(root / "tiny")
    tok.save_pretrained(root / "tiny")
    return root / "tiny"


def arithmetic_rows(n: int, digits: tuple[int, int] = (2, 3)) -> list[dict]:
    from bellman.llm.tasks import arithmetic
    return arithmetic(digits=digits, n_train=n, n_test=8, seed=0).train


def chat(a) -> bool:
    """True for a real chat model: prompts are asked as a user message ("What is 16 + 22?")."""
    return a.model != "tiny"


def question(row: dict, a) -> str:
    from bellman.llm.tasks import question_prompt
    return question_prompt(row) if chat(a) else row["prompt"]


def trl_prompt(row: dict, a):
    """TRL's prompt for a row: a conversational one (a list of messages) for a chat model."""
    return [{"role": "user", "content": question(row, a)}] if chat(a) else row["prompt"]


def text_of(completion) -> str:
    """A TRL completion as text: conversational completions are lists of messages."""
    return completion[-1]["content"] if isinstance(completion, list) else completion


def arithmetic_reward(prompts, completions, answer, **_):
    """The built-in arithmetic reward on TRL's completions, conversational or not."""
    from bellman.llm.tasks import arithmetic_reward as reward
    return reward(prompts, [text_of(c) for c in completions], answer)


def bellman_grpo(path: Path, rows: list[dict], a) -> Run:
    from bellman.llm.grpo import GRPOConfig, GRPOTrainer
    from bellman.llm.model import load_model
    from bellman.llm.tasks import Task, arithmetic_reward
    model, tok = load_model(path)
    task = Task("arithmetic", train=rows, test=rows[:1], accuracy=arithmetic_reward)
    cfg = GRPOConfig(total_steps=a.steps, learning_rate=1e-5, num_generations=a.generations,
                     prompts_per_step=a.prompts, beta=a.beta, loss_type="grpo", temperature=1.0,
                     max_new_tokens=a.max_new_tokens, eval_rows=1, eval_max_new_tokens=1, progress=False)
    trainer = GRPOTrainer(model, tok, task, cfg, prompt_fn=lambda r: question(r, a))
    clock, train_step = StepClock(model.config.hidden_size, a.bound), trainer.train_step

    def timed_step(step):
        out = train_step(step)
        clock.step_ended()
        return out

    trainer.train_step = timed_step
    clock.start()
    trainer.train()
    dt = clock.elapsed()
    length = sum(h["completion_length"] for h in trainer.history) / len(trainer.history)
    gap = max(h["sampler_logprob_gap"] for h in trainer.history)
    return Run(dt, length, steady(clock.ends, a), gap, clock.rates)


def trl_grpo(path: Path, rows: list[dict], a) -> Run:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer
    batch = a.prompts * a.generations
    args = GRPOConfig(output_dir=str(path.parent / "trl_grpo"), max_steps=a.steps, learning_rate=1e-5,
                      per_device_train_batch_size=batch, num_generations=a.generations,
                      generation_batch_size=batch, max_completion_length=a.max_new_tokens, temperature=1.0,
                      beta=a.beta, loss_type="grpo", num_iterations=1, use_cpu=True, bf16=False,
                      gradient_checkpointing=False, report_to="none", save_strategy="no", logging_steps=1,
                      disable_tqdm=True, seed=0)
    model = AutoModelForCausalLM.from_pretrained(path)
    trainer = GRPOTrainer(model=model, reward_funcs=arithmetic_reward, args=args,
                          train_dataset=Dataset.from_list([{"prompt": trl_prompt(r, a), "answer": r["answer"]}
                                                          for r in rows]),
                          processing_class=AutoTokenizer.from_pretrained(path))
    trainer.remove_callback(PrinterCallback)
    clock = StepClock(model.config.hidden_size, a.bound)

    class StepEnds(TrainerCallback):
        def on_step_end(self, *_, **__):
            clock.step_ended()

    trainer.add_callback(StepEnds())
    clock.start()
    trainer.train()
    dt = clock.elapsed()
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    return Run(dt, sum(lengths) / len(lengths), steady(clock.ends, a), rates=clock.rates)


class StepClock:
    """Step end times of a training loop and, with ``measure``, this machine's ``torch.mm`` rate taken after
    every step: the compute bound then uses the median rate of the steps it bounds, on a shared machine whose
    one-core speed moves within minutes. The time the rate measurements take is left out of the step times."""

    def __init__(self, d: int, measure: bool):
        self.d, self.measure, self.ends, self.rates, self.paused = d, measure, [], [], 0.0

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def step_ended(self) -> None:
        end = time.perf_counter()
        self.ends.append(end - self.paused)
        if self.measure:
            self.rates.append(matmul_throughput(self.d, repeats=5))
            self.paused += time.perf_counter() - end

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0 - self.paused


@dataclass(order=True)
class Run:
    """One side's GRPO run: the whole loop's seconds, the mean completion length, the seconds per step after
    ``--warmup`` steps (None when the run has no more steps than that) and, for bellman, the largest
    |sampler log-prob - training-pass log-prob| over its tokens."""

    seconds: float
    length: float
    steady_step: float | None = None
    gap: float | None = None
    rates: list[float] = field(default_factory=list, compare=False)


def steady(ends: list[float], a) -> float | None:
    """Seconds per step from the end of step ``a.warmup`` to the end of the last: a process's first steps
    also pay for the memory it touches for the first time (on this machine's virtual memory several seconds
    a step at a 135M model's batch), which later steps reuse."""
    if len(ends) <= a.warmup or not a.warmup:
        return None
    return (ends[-1] - ends[a.warmup - 1]) / (len(ends) - a.warmup)


def matmul_throughput(d: int, repeats: int = 10) -> float:
    """FLOP/s of ``torch.mm`` on a training-sized product, (2048 x d) by (d x 4d), best of ``repeats``."""
    x, w = torch.randn(2048, d), torch.randn(d, 4 * d)
    torch.mm(x, w)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(x, w)
        best = min(best, time.perf_counter() - t)
    return 2 * 2048 * d * 4 * d / best


def step_flops(model, tok, rows: list[dict], a, completion_length: float) -> dict[str, float]:
    """Floating-point operations of one GRPO step's matrix products, by part: sampling (each prompt's
    prefill once, then every completion token), the policy's log-prob forward, its backward (twice the
    forward) and the reference's forward (beta > 0). Linear maps cost 2 x weights per position, the output
    head only at completion positions, attention 4 x (query width) x (keys) per position and layer."""
    from bellman.llm.chat import has_chat_template, render_prompt
    head = model.get_output_embeddings()
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head)
    cfg = model.config
    width = cfg.num_attention_heads * getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
    layers = cfg.num_hidden_layers
    texts = [render_prompt(tok, question(r, a), has_chat_template(tok)) for r in rows[:a.prompts]]
    lp = sum(len(tok(t, add_special_tokens=False).input_ids) for t in texts) / len(texts)
    lc, p, n = completion_length, a.prompts, a.prompts * a.generations
    attention = lambda first, count: 4 * width * layers * count * (first + (count + 1) / 2)  # noqa: E731
    prefill = p * (2 * linear * lp + attention(0, lp))
    completions = n * (2 * (linear + head.weight.numel()) * lc + attention(lp, lc))
    forward = prefill + completions
    return {"sampling": forward, "log-prob forward (policy)": forward, "backward": 2 * forward,
            "log-prob forward (reference)": forward if a.beta > 0 else 0.0}


def print_bound(path: Path, rows: list[dict], a, side: str, seconds: float, length: float,
                steady_step: float | None = None, rates: list[float] | None = None) -> None:
    """A GRPO step's time (the mean over the run and, if measured, after the warm-up) beside its compute bound
    at this machine's matrix-multiply rate: the median of ``rates`` (measured between the run's steps), else
    measured now."""
    from bellman.llm.model import load_model
    model, tok = load_model(path)
    rate = statistics.median(rates) if rates else matmul_throughput(model.config.hidden_size)
    flops = step_flops(model, tok, rows, a, length)
    bound = sum(flops.values()) / rate
    parts = ", ".join(f"{k} {1000 * v / rate:.0f} ms" for k, v in flops.items() if v)
    after = f", after the warm-up {steady_step:6.2f} s = {steady_step / bound:.2f}x" if steady_step else ""
    print(f"  {side:8s} step {seconds:6.2f} s, compute bound {bound:6.2f} s ({seconds / bound:.2f}x the bound{after}; "
          f"{sum(flops.values()) / 1e12:.2f} TFLOP at {rate / 1e9:.0f} GFLOP/s: {parts})")


def timed_calls(targets: dict[str, tuple[object, str]], run) -> dict[str, list[float]]:
    """Run ``run()`` with each ``(owner, attribute)`` function wrapped to record the wall time of every call."""
    times: dict[str, list[float]] = {name: [] for name in targets}
    originals = [(owner, attr, getattr(owner, attr)) for owner, attr in targets.values()]
    for name, (owner, attr, f) in zip(targets, originals):
        def timed(*args, _f=f, _name=name, **kwargs):
            t = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                times[_name].append(time.perf_counter() - t)
        setattr(owner, attr, timed)
    try:
        run()
    finally:
        for owner, attr, f in originals:
            setattr(owner, attr, f)
    return times


def grpo_phases(path: Path, rows: list[dict], a) -> None:
    """Median cost per step of each part of a GRPO step, bellman and TRL (first two steps left out)."""
    from trl import GRPOTrainer as TRLGRPOTrainer

    from bellman.llm.engine import LeanEngine
    from bellman.llm.grpo import GRPOTrainer
    common = {"backward": (torch.Tensor, "backward"), "AdamW step": (torch.optim.AdamW, "step")}
    sides = {
        "bellman": ({"sampling": (GRPOTrainer, "sample"),
                     "log-prob forwards (policy, reference)": (LeanEngine, "logprobs"),
                     **common}, lambda: bellman_grpo(path, rows, a)),
        "TRL": ({"sampling": (TRLGRPOTrainer, "_generate"),
                 "log-prob forwards (policy, reference)": (TRLGRPOTrainer, "_get_per_token_logps_and_entropies"),
                 **common}, lambda: trl_grpo(path, rows, a)),
    }
    per_step = {}
    for side, (targets, run) in sides.items():
        t = time.perf_counter()
        times = timed_calls(targets, run)
        per_step[side] = {"whole run / steps": (time.perf_counter() - t) / a.steps}
        for name, ts in times.items():
            calls = len(ts) // a.steps
            ts = sorted(ts[2 * calls:])
            per_step[side][name] = calls * ts[len(ts) // 2]
    print("GRPO parts, median ms per step (one timed run per side)")
    for name in per_step["bellman"]:
        print(f"  {name:40s} bellman {1000 * per_step['bellman'][name]:7.1f}   TRL {1000 * per_step['TRL'][name]:7.1f}")


def kernels(path: Path, rows: list[dict], a) -> None:
    """Interleaved min / median of the decoding and DPO-forward variants (see the module docstring)."""
    from transformers import GenerationConfig

    from bellman.llm.batching import encode_completions, encode_prompts
    from bellman.llm.engine import HFEngine, LeanEngine
    from bellman.llm.logprobs import completion_logprobs
    from bellman.llm.model import load_model
    from bellman.llm.rollout import SamplingConfig
    model, tok = load_model(path)
    lean, hf = LeanEngine(model, tok), HFEngine(model, tok)
    prompts = [r["prompt"] for r in rows[:a.prompts] for _ in range(a.generations)]
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=a.max_new_tokens)
    p_ids, p_mask = encode_prompts(tok, prompts)
    gen_cfg = GenerationConfig(do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=a.max_new_tokens,
                               pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    pairs = preference_pairs(rows[:a.pairs], a)
    dpo_p = encode_prompts(tok, [x["prompt"] for x in pairs])
    dpo_c = encode_completions(tok, [x[side] for x in pairs for side in ("chosen", "rejected")])
    dpo_p2 = tuple(t.repeat_interleave(2, 0) for t in dpo_p)

    def decode(engine):
        def run():
            model.eval()
            engine.generate(prompts, sampling, seed=0)
        return run

    def hf_generate():
        model.eval()
        with torch.no_grad():
            model.generate(input_ids=p_ids, attention_mask=p_mask, generation_config=gen_cfg)

    def dpo_shared(engine):
        def run():
            model.train()
            engine.logprobs(*dpo_p, *dpo_c, shared_prompt=True).sum().backward()
        return run

    def dpo_plain():
        model.train()
        completion_logprobs(model, *dpo_p2, *dpo_c).sum().backward()

    variants = {
        f"decode {len(prompts)} rows x {a.max_new_tokens} tokens: bellman, lean forward": decode(lean),
        "  the same through the Hugging Face forward": decode(hf),
        "  Hugging Face model.generate": hf_generate,
        f"DPO forward + backward, {a.pairs} pairs: shared prompt, lean forward": dpo_shared(lean),
        "  shared prompt through the Hugging Face forward": dpo_shared(hf),
        "  prompt repeated, plain Hugging Face forward": dpo_plain,
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(25):
        for name, f in variants.items():
            t = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t)
    for name, ts in times.items():
        ts = sorted(ts)
        print(f"{name:70s} min {1000 * ts[0]:6.1f}  median {1000 * ts[len(ts) // 2]:6.1f} ms")


def preference_pairs(rows: list[dict], a=None) -> list[dict[str, str]]:
    """Correct answer (chosen) against an off-by-one-digit answer (rejected); with a chat model the prompt
    is the question and the answers are the replies "16 + 22 = 38" / "16 + 22 = 48"."""
    pairs = []
    for i, r in enumerate(rows):
        wrong = str(int(r["answer"]) + 10 ** (i % 3))
        if a is not None and chat(a):
            q = r["question"].replace("+", " + ")
            pairs.append({"prompt": question(r, a), "chosen": f"{q} = {r['answer']}", "rejected": f"{q} = {wrong}"})
        else:
            pairs.append({"prompt": r["prompt"], "chosen": r["answer"], "rejected": wrong})
    return pairs


def trl_pairs(pairs: list[dict], a) -> list[dict]:
    """The pairs as TRL's conversational preference data for a chat model."""
    if not chat(a):
        return pairs
    return [{"prompt": [{"role": "user", "content": x["prompt"]}],
             "chosen": [{"role": "assistant", "content": x["chosen"]}],
             "rejected": [{"role": "assistant", "content": x["rejected"]}]} for x in pairs]


def bellman_dpo(path: Path, pairs: list[dict], a) -> float:
    from bellman.llm.dpo import DPOConfig, DPOTrainer
    from bellman.llm.model import load_model
    from bellman.llm.tasks import Task, arithmetic_reward
    model, tok = load_model(path)
    rows = [{"prompt": "1+1=", "question": "1+1", "answer": "2"}]
    task = Task("arithmetic", train=rows, test=rows, accuracy=arithmetic_reward)
    cfg = DPOConfig(total_steps=a.steps, learning_rate=1e-5, beta=0.1, loss_type="sigmoid",
                    batch_size=a.pairs, eval_rows=1, eval_max_new_tokens=1, progress=False)
    trainer = DPOTrainer(model, tok, task, cfg, pairs)
    t = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t


def trl_dpo(path: Path, pairs: list[dict], a) -> float:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import DPOConfig, DPOTrainer
    args = DPOConfig(output_dir=str(path.parent / "trl_dpo"), max_steps=a.steps, learning_rate=1e-5, beta=0.1,
                     loss_type="sigmoid", per_device_train_batch_size=a.pairs, use_cpu=True, bf16=False,
                     gradient_checkpointing=False, report_to="none", save_strategy="no", logging_steps=1,
                     disable_tqdm=True, seed=0)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(path), args=args,
                         train_dataset=Dataset.from_list(trl_pairs(pairs, a)),
                         processing_class=AutoTokenizer.from_pretrained(path))
    trainer.remove_callback(PrinterCallback)
    t = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--prompts", type=int, default=4, help="GRPO prompts per step")
    p.add_argument("--generations", type=int, default=8, help="GRPO completions per prompt (G)")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--beta", type=float, default=0.04, help="GRPO KL weight (DeepSeekMath); > 0 keeps a reference")
    p.add_argument("--pairs", type=int, default=32, help="DPO pairs per step")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1,
                   help="GRPO steps left out of the per-step time after warm-up (0: not printed)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", choices=["grpo", "dpo"], default=None)
    p.add_argument("--phases", action="store_true", help="also time the parts of a GRPO step on both sides")
    p.add_argument("--kernels", action="store_true", help="time decoding and DPO forward variants alone")
    p.add_argument("--model", default="tiny", help="tiny (the built-in model) or a model directory")
    p.add_argument("--bound", action="store_true", help="print a GRPO step's compute bound beside its time")
    p.add_argument("--same-allocator", action="store_true",
                   help="keep freed memory (bellman.core.resources.keep_freed_memory) for both sides from the start")
    a = p.parse_args()
    if a.same_allocator:
        from bellman.core.resources import keep_freed_memory
        keep_freed_memory()
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    import datasets
    import transformers
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()

    with tempfile.TemporaryDirectory() as tmp:
        path = tiny_dir(Path(tmp)) if a.model == "tiny" else Path(a.model)
        rows = arithmetic_rows(512, (2, 3) if a.model == "tiny" else (2, 2))
        print(f"{'tiny Llama' if a.model == 'tiny' else 'model'} from {path} | {a.threads} torch thread(s) | {a.steps} steps, best of {a.repeats} | "
              f"load average {os.getloadavg()[0]:.1f}"
              f"{' | both sides keep freed memory' if a.same_allocator else ''}")
        if a.kernels:
            kernels(path, rows, a)
        if a.steps and a.only in (None, "grpo") and a.repeats:
            per = a.prompts * a.generations  # completions per step
            n = a.steps * per
            times = {"trl": [], "bellman": []}
            for _ in range(a.repeats):
                times["trl"].append(trl_grpo(path, rows, a))
                times["bellman"].append(bellman_grpo(path, rows, a))
            trl, bel = min(times["trl"]), min(times["bellman"])
            print(f"GRPO  {a.prompts} prompts x {a.generations} generations, max_new_tokens {a.max_new_tokens}, "
                  f"beta {a.beta}")
            print(f"  TRL      {n / trl.seconds:8.2f} completions/s  ({trl.seconds:6.1f} s, mean length {trl.length:.1f})")
            print(f"  bellman  {n / bel.seconds:8.2f} completions/s  ({bel.seconds:6.1f} s, mean length {bel.length:.1f})")
            print(f"  ratio bellman / TRL: {trl.seconds / bel.seconds:.2f}x")
            if trl.steady_step and bel.steady_step:
                print(f"  after {a.warmup} warm-up step(s): TRL {trl.steady_step:6.1f} s / step "
                      f"({per / trl.steady_step:.2f} completions/s), bellman {bel.steady_step:6.1f} s / step "
                      f"({per / bel.steady_step:.2f} completions/s), ratio {trl.steady_step / bel.steady_step:.2f}x")
            print(f"  bellman's sampler vs its training pass, largest |log-prob difference| over the tokens: "
                  f"{bel.gap:.1e} (pi_old in the loss is the training pass's own)")
            if a.bound:
                print_bound(path, rows, a, "TRL", trl.seconds / a.steps, trl.length, trl.steady_step, trl.rates)
                print_bound(path, rows, a, "bellman", bel.seconds / a.steps, bel.length, bel.steady_step, bel.rates)
                for side, run in (("TRL", trl), ("bellman", bel)):
                    print(f"  {side:8s} torch.mm GFLOP/s after each step: "
                          + " ".join(f"{r / 1e9:.0f}" for r in run.rates))
        if a.steps and a.only in (None, "grpo") and a.phases:
            grpo_phases(path, rows, a)
        if a.steps and a.only in (None, "dpo") and a.repeats:
            pairs = preference_pairs(rows, a)
            n = a.steps * a.pairs * 2
            times = {"trl": [], "bellman": []}
            for _ in range(a.repeats):
                times["trl"].append(trl_dpo(path, pairs, a))
                times["bellman"].append(bellman_dpo(path, pairs, a))
            t_trl, t_bel = min(times["trl"]), min(times["bellman"])
            print(f"DPO   {a.pairs} pairs per step (chosen + rejected = {2 * a.pairs} completions)")
            print(f"  TRL      {n / t_trl:8.1f} completions/s  ({t_trl:6.1f} s)")
            print(f"  bellman  {n / t_bel:8.1f} completions/s  ({t_bel:6.1f} s)")
            print(f"  ratio bellman / TRL: {t_trl / t_bel:.2f}x")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
