"""GRPO, PPO (with a learnt reward model) and DPO each raise held-out accuracy of an SFT'd tiny model.

One fixed-seed run on 2-digit addition: the built-in tiny Llama is first taught the task by SFT (briefly,
so it is right only part of the time); then, each from that same SFT'd model,

- GRPO   with the verifiable accuracy reward (group-normalised advantages, k3 KL);
- DPO    on pairs of its own sampled completions, correct (chosen) against wrong (rejected);
- PPO    (PPO-max) against a reward model trained with Bradley-Terry on those same pairs: the policy never
         sees the task reward, only the learnt reward model's score;

and the held-out accuracy (greedy, 200 test problems never trained on) before and after is printed side
by side. The reward model is imperfect (about 3 in 4 held-out pairs ranked right), so PPO over-optimises
it when pushed: with lr 1e-4 and kl_coef 0.05 its score rises while accuracy falls (Gao et al. 2022,
"Scaling laws for reward model overoptimization"); hence the small learning rate and strong KL here.

    .venv/bin/python benchmarks/llm_gains.py
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch

from bellman.llm.dpo import DPOConfig, DPOTrainer
from bellman.llm.grpo import GRPOConfig, GRPOTrainer
from bellman.llm.model import load_model
from bellman.llm.pairs import sample_preference_pairs
from bellman.llm.ppo import PPORLHFConfig, PPORLHFTrainer
from bellman.llm.reward_model import RewardModel, RewardModelConfig, RewardModelTrainer
from bellman.llm.rollout import SamplingConfig
from bellman.llm.sft import SFTConfig, SFTTrainer
from bellman.llm.tasks import arithmetic

MAX_NEW_TOKENS = 6   # two-digit sums: at most 3 digits + EOS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sft-steps", type=int, default=500)
    p.add_argument("--grpo-steps", type=int, default=40)
    p.add_argument("--dpo-steps", type=int, default=100)
    p.add_argument("--rm-steps", type=int, default=300)
    p.add_argument("--ppo-steps", type=int, default=40)
    p.add_argument("--pair-prompts", type=int, default=2000, help="training prompts sampled for preference pairs")
    p.add_argument("--generations", type=int, default=8, help="samples per prompt (GRPO group, pair sampling)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="keep every run's directory here (default: a temp dir)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    out = a.out or Path(tempfile.mkdtemp(prefix="llm_gains_"))
    task = arithmetic(digits=(2, 2), n_train=2000, n_test=200, seed=a.seed)
    common = {"eval_rows": 200, "eval_max_new_tokens": MAX_NEW_TOKENS, "seed": a.seed, "progress": False}

    t0 = time.perf_counter()
    model, tok = load_model("tiny", seed=a.seed)
    sft = SFTTrainer(model, tok, task, SFTConfig(out=str(out / "sft"), total_steps=a.sft_steps, learning_rate=1e-3,
                                                 batch_size=32, **common)).train()
    print(f"SFT  {a.sft_steps} steps: held-out accuracy {sft['accuracy_before']:.3f} -> {sft['accuracy_after']:.3f} "
          f"({time.perf_counter() - t0:.0f} s)")
    results: dict[str, tuple[dict, float]] = {}

    t = time.perf_counter()
    cfg = GRPOConfig(out=str(out / "grpo"), total_steps=a.grpo_steps, learning_rate=1e-4, prompts_per_step=8,
                     num_generations=a.generations, beta=0.04, temperature=1.0, max_new_tokens=MAX_NEW_TOKENS, **common)
    results["GRPO"] = GRPOTrainer(copy.deepcopy(model), tok, task, cfg).train(), time.perf_counter() - t

    t = time.perf_counter()
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=MAX_NEW_TOKENS)
    pairs = sample_preference_pairs(model, tok, task.train[:a.pair_prompts], task.rewards, a.generations,
                                    sampling, seed=a.seed)
    held_out = sample_preference_pairs(model, tok, task.test, task.rewards, a.generations, sampling, seed=a.seed + 1)
    t_pairs = time.perf_counter() - t
    print(f"pairs: {len(pairs)} from {a.pair_prompts} training prompts, {len(held_out)} held-out "
          f"(test prompts) ({t_pairs:.0f} s)")

    t = time.perf_counter()
    cfg = DPOConfig(out=str(out / "dpo"), total_steps=a.dpo_steps, learning_rate=3e-5, beta=0.1, batch_size=32, **common)
    results["DPO"] = DPOTrainer(copy.deepcopy(model), tok, task, cfg, pairs).train(), time.perf_counter() - t + t_pairs

    t = time.perf_counter()
    rm = RewardModel.from_causal_lm(model, seed=a.seed)
    rm_cfg = RewardModelConfig(out=str(out / "rm"), total_steps=a.rm_steps, learning_rate=1e-4, batch_size=32,
                               seed=a.seed, progress=False)
    rm_eval = RewardModelTrainer(rm, tok, pairs, rm_cfg, eval_pairs=held_out).train()
    print(f"reward model: held-out preference accuracy {rm_eval['accuracy_before']:.3f} -> "
          f"{rm_eval['accuracy_after']:.3f}")
    cfg = PPORLHFConfig(out=str(out / "ppo"), total_steps=a.ppo_steps, learning_rate=1e-5, batch_size=64,
                        n_epochs=2, num_mini_batches=2, kl_coef=0.2, temperature=1.0,
                        max_new_tokens=MAX_NEW_TOKENS, **common)
    results["PPO (reward model)"] = (PPORLHFTrainer(copy.deepcopy(model), tok, task, cfg, rm).train(),
                                     time.perf_counter() - t + t_pairs)

    print(f"\nheld-out accuracy on {len(task.test)} two-digit additions, from the same SFT'd tiny model (seed {a.seed})")
    print(f"{'method':<20}{'before':>8}{'after':>8}{'gain':>8}{'time s':>9}")
    for name, (r, dt) in results.items():
        gain = r["accuracy_after"] - r["accuracy_before"]
        print(f"{name:<20}{r['accuracy_before']:>8.3f}{r['accuracy_after']:>8.3f}{gain:>+8.3f}{dt:>9.0f}")
    print(f"runs in {out}; total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
