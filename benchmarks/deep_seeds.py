"""Final deterministic evaluation return of one algorithm's config on several seeds, with the time taken.

    python benchmarks/deep_seeds.py --algo dqn --env CartPole-v1 --seeds 0 1 2 3 4
    python benchmarks/deep_seeds.py --algo ppo --fast --seeds 0 1 2 3 4 5 6 7 8 9
    python benchmarks/deep_seeds.py --algo dqn --zoo --seeds 0 1 2      # the rl-baselines3-zoo setting
    python benchmarks/deep_seeds.py --algo dqn --set learning_rate=5e-4 --seeds 0

The config is built as `bellman train ALGO --env ENV [--fast] [--set k=v ...]` builds it
(`Config.for_env(env, fast=..., **changes)`), so the defaults are exactly what a user gets; `--zoo` starts
from the class's `zoo_presets` (or its `presets` where those are the zoo's) instead. Each seed trains one
agent for `--steps` env steps (`learn(steps)`), then `agent.evaluate(20)`: 20 deterministic episodes.
Prints a row per seed (return, wall-clock and process CPU time, load average before and after) and a
summary (seeds at or above `--target`). Runs one seed at a time in this process, with the config's
torch_threads (1 unless --set changes it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from bellman.deep import algorithm

EVAL_EPISODES = 20


def build_config(cls, env: str, fast: bool, zoo: bool, changes: dict):
    config_class = cls.config_class
    if zoo:
        zoo_presets = getattr(config_class, "zoo_presets", config_class.presets)
        if env not in zoo_presets:
            raise ValueError(f"{config_class.__name__} has no rl-baselines3-zoo preset for {env!r}")
        return config_class.from_dict({**zoo_presets[env], **changes})
    return config_class.for_env(env, fast=fast, **changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", required=True, help="a `bellman train` algorithm name, e.g. dqn or ppo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--fast", action="store_true", help="the class's fast preset for ENV")
    parser.add_argument("--zoo", action="store_true", help="the rl-baselines3-zoo preset for ENV")
    parser.add_argument("--set", dest="set_", action="append", default=[], help="config change key=value")
    parser.add_argument("--target", type=float, default=475.0)
    parser.add_argument("--every", type=int, default=None,
                        help="also evaluate every EVERY steps (20 episodes; the training is the same as learn's)")
    args = parser.parse_args()
    if args.fast and args.zoo:
        parser.error("--fast and --zoo are different presets; pass one")
    cls = algorithm(args.algo)
    changes = cls.config_class.parse(args.set_)
    config = build_config(cls, args.env, args.fast, args.zoo, changes)
    label = "zoo" if args.zoo else "fast" if args.fast else "default"
    print(f"{args.algo} on {args.env}, {args.steps} steps, preset {label}, changes {changes or 'none'}")
    print(f"config: {config}")
    returns, walls = [], []
    for seed in args.seeds:
        load_before = os.getloadavg()[0]
        w0, c0 = time.perf_counter(), time.process_time()
        agent = cls(args.env, config, seed=seed)
        curve = []
        if args.every is None:
            agent.learn(args.steps, progress=False)
        else:  # learn's loop, with an evaluation at each multiple of `every` (the evaluation draws no training randomness)
            agent.total_steps = args.steps
            with agent.runtime():  # learn's torch settings (torch_threads, flush_denormal)
                for mark in range(args.every, args.steps + args.every, args.every):
                    while agent.step < min(mark, args.steps):
                        agent.train_iteration()
                    curve.append(agent.evaluate(EVAL_EPISODES)[0])
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        mean, std = agent.evaluate(EVAL_EPISODES)
        returns.append(mean)
        walls.append(wall)
        print(f"seed {seed:2d}  eval {mean:6.1f} +- {std:5.1f}  wall {wall:6.1f} s  cpu {cpu:6.1f} s  "
              f"load {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
              + (f"  curve {' '.join(f'{r:.0f}' for r in curve)}" if curve else ""), flush=True)
    met = sum(r >= args.target for r in returns)
    print(f"{met}/{len(returns)} seeds >= {args.target:g}; mean {statistics.fmean(returns):.1f}, "
          f"min {min(returns):.1f}; wall mean {statistics.fmean(walls):.1f} s, total {sum(walls):.1f} s")


if __name__ == "__main__":
    main()
