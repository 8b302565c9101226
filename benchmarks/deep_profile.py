"""Where a bellman deep RL agent's training step goes: torch.profiler over `--steps` env steps of `learn`
(after `--warmup` steps, learning_starts included), the self CPU time of the matrix products (mm, addmm, bmm,
baddbmm, forward and backward) against everything else, and the top operators.

    python benchmarks/deep_profile.py --algo sac --env HalfCheetah-v5        # the zoo's entry, one thread

A product share p says how far removing every other cost could take a step: to p of its time.
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
ALGOS = {"ppo": "PPO", "dqn": "DQN", "td3": "TD3", "sac": "SAC", "ddpg": "DDPG"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=sorted(ALGOS), default="sac")
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--warmup", type=int, default=None, help="env steps before profiling (default: the "
                                                                  "config's learning_starts + 1000)")
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import bellman.deep as deep
    cls = getattr(deep, ALGOS[args.algo])
    config = cls.config_class.for_env(args.env, zoo=True, flush_denormal=True)
    agent = cls(args.env, config, seed=0)
    warmup = args.warmup if args.warmup is not None else getattr(config, "learning_starts", 0) + 1000
    agent.learn(warmup, progress=False)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        agent.learn(warmup + args.steps, progress=False)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    products = sum(e.self_cpu_time_total for e in events if e.key in PRODUCTS)
    print(f"{args.algo} on {args.env}, {args.steps} env steps after {warmup}: {total / 1e3 / args.steps:.2f} ms "
          f"of CPU per env step; matrix products {100 * products / total:.0f} %")
    print(events.table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
