"""Learning on a real model: SmolLM2-135M-Instruct on addition asked as chat ("What is 16 + 22?"), through the
command line (`bellman llm grpo | dpo | rm | ppo`) and the built-in rewards (the reply's answer tag, boxed
answer or final number).

    python benchmarks/llm_real.py grpo              # 2-digit sums: held-out greedy accuracy before -> after
    python benchmarks/llm_real.py grpo --digits 2 3
    python benchmarks/llm_real.py r1                # R1-Zero tags asked in the chat message: format reward
    python benchmarks/llm_real.py r1 --add-reward tag_count   # with Open-R1's partial credit for the tags
    python benchmarks/llm_real.py r1-cold           # the same after a cold start of 6 SFT steps on tagged replies
    python benchmarks/llm_real.py dpo               # DPO on the model's own correct-vs-wrong samples
    python benchmarks/llm_real.py ppo               # a reward model on those pairs, then PPO-RLHF against it
    python benchmarks/llm_real.py all

Each prints the command it runs, the wall time, the load average, eval.json (held-out accuracy / format
reward before and after) and the training reward per tenth of the run from metrics.csv. Fixed seeds;
float32 on the CPU; one torch thread (``--threads``). Runs go to runs/real_<kind>/.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = Path(os.environ.get("BELLMAN_SMOLLM2", ROOT / "models/smollm2-135m-instruct"))
BELLMAN = [str(Path(sys.executable).parent / "bellman")]


def common(args, model: Path = SMOLLM2) -> list[str]:
    """The options every run shares: the model, the task, the held-out evaluation, no progress bar."""
    lo, hi = args.digits
    return ["--model", str(model), "--task", f"arithmetic:{lo}-{hi}", "--eval-rows", str(args.eval_rows),
            "--eval-max-new-tokens", str(args.new_tokens), "--checkpoint-every", "100000", "--seed", str(args.seed),
            "--no-progress"]


def grpo(args, out: Path, template: str = "question", model: Path = SMOLLM2) -> list[list[str]]:
    return [BELLMAN + ["llm", "grpo", "--out", str(out), "--template", template, *common(args, model),
                       "--steps", str(args.steps), "--lr", str(args.lr), "--prompts-per-step", str(args.prompts),
                       "--generations", str(args.generations), "--max-new-tokens", str(args.new_tokens),
                       "--beta", str(args.beta), "--temperature", "1.0",
                       *[o for r in args.add_reward for o in ("--add-reward", r)]]]


def pairs_options(args) -> list[str]:
    return ["--template", "question", "--prompts", str(args.pair_prompts), "--generations", str(args.generations),
            "--max-new-tokens", str(args.new_tokens), "--temperature", "1.0"]


def dpo(args, out: Path) -> list[list[str]]:
    return [BELLMAN + ["llm", "dpo", "--out", str(out), *common(args), *pairs_options(args),
                       "--steps", str(args.steps), "--lr", str(args.lr), "--batch-size", str(args.prompts),
                       "--beta", "0.1"]]


def ppo(args, out: Path) -> list[list[str]]:
    rm = out / "rm"
    return [BELLMAN + ["llm", "rm", "--out", str(rm), *common(args), *pairs_options(args),
                       "--steps", str(args.rm_steps), "--lr", "1e-5", "--batch-size", "16"],
            BELLMAN + ["llm", "ppo", "--out", str(out / "ppo"), "--template", "question", *common(args),
                       "--reward-model", str(rm / "model"), "--steps", str(args.steps), "--lr", str(args.lr),
                       "--batch-size", str(args.prompts * args.generations),
                       "--max-new-tokens", str(args.new_tokens), "--n-epochs", str(args.ppo_epochs),
                       "--kl-coef", str(args.kl_coef), "--temperature", "1.0"]]


def r1_cold(args, out: Path) -> list[list[str]]:
    """DeepSeek-R1's cold start, then R1-Zero's GRPO: a few SFT steps on r1-chat's tagged replies
    ("16 + 22 = 38</think> <answer>38</answer>", ``r1_zero.cold_start``), then GRPO with the format and
    accuracy rewards from that model."""
    sft = out / "sft"
    return [BELLMAN + ["llm", "sft", "--out", str(sft), "--template", "r1-chat", *common(args),
                       "--steps", str(args.cold_steps), "--lr", "1e-5", "--batch-size", "8"],
            *grpo(args, out / "grpo", "r1-chat", sft / "model")]


KINDS = {"grpo": grpo, "r1": lambda a, o: grpo(a, o, "r1-chat"), "r1-cold": r1_cold, "dpo": dpo, "ppo": ppo}


def per_tenth(path: Path) -> str:
    """Each reward column of metrics.csv, averaged over tenths of the run."""
    rows = list(csv.DictReader(path.open()))
    lines = []
    for k in [k for k in rows[0] if k.startswith("reward") or k in ("accuracy", "pref_accuracy", "score")]:
        v = [float(r[k]) for r in rows if r.get(k) not in (None, "")]
        if not v:
            continue
        tenth = max(1, len(v) // 10)
        lines.append(f"{k} per tenth of the run: " + " ".join(
            f"{sum(v[i:i + tenth]) / len(v[i:i + tenth]):.2f}" for i in range(0, len(v), tenth)))
    return "\n".join(lines)


def run(kind: str, args) -> dict:
    name = f"real_{kind}" + "".join(f"_{r}" for r in args.add_reward)
    out = ROOT / "runs" / (name if args.seed == 0 else f"{name}_seed{args.seed}")
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT / "src")}
    t0 = time.perf_counter()
    cmds = KINDS[kind](args, out)
    for cmd in cmds:
        print("$ " + shlex.join(["bellman", *cmd[len(BELLMAN):]]), flush=True)
        subprocess.run(cmd, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    # each command's --out is one stage; the last one's eval.json and metrics.csv are the run's result, the
    # earlier stages' held-out figures are printed beside it (r1-cold: before and after the cold start)
    *stages, final = (Path(cmd[cmd.index("--out") + 1]) for cmd in cmds)
    for stage in stages:
        print(f"{stage.name}: {(stage / 'eval.json').read_text().strip()}", flush=True)
    result = {"kind": kind, "digits": list(args.digits), **json.loads((final / "eval.json").read_text()),
              "wall_s": round(wall), "load": os.getloadavg()}
    print(json.dumps(result), flush=True)
    print(per_tenth(final / "metrics.csv"), flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kind", choices=[*KINDS, "all"])
    ap.add_argument("--digits", type=int, nargs=2, default=(2, 2))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--prompts", type=int, default=4, help="prompts per step (DPO: pairs per step)")
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--beta", type=float, default=0.0)
    ap.add_argument("--eval-rows", type=int, default=100)
    ap.add_argument("--pair-prompts", type=int, default=64, help="DPO / reward model: prompts sampled for pairs")
    ap.add_argument("--rm-steps", type=int, default=30)
    ap.add_argument("--ppo-epochs", type=int, default=4, help="ppo: passes over each rollout (TRL's 4)")
    ap.add_argument("--kl-coef", type=float, default=0.05, help="ppo: the KL penalty's weight (TRL's 0.05)")
    ap.add_argument("--cold-steps", type=int, default=6, help="r1-cold: SFT steps of 8 tagged replies")
    ap.add_argument("--add-reward", nargs="*", default=[], help="GRPO: built-in rewards added to the template's "
                                                                "(e.g. tag_count)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="every stage's seed: the task's train / held-out "
                                                         "split, the samples, the data order")
    args = ap.parse_args()
    if not (SMOLLM2 / "model.safetensors").is_file():
        sys.exit(f"SmolLM2-135M-Instruct is not at {SMOLLM2}; install it with `make smollm2`")
    for kind in (KINDS if args.kind == "all" else [args.kind]):
        run(kind, args)


if __name__ == "__main__":
    main()
