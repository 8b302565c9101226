"""Each on-policy algorithm against the return it must reach (issue 3), with fixed seeds.

    python benchmarks/deep_targets.py                 # every target, seed 0
    python benchmarks/deep_targets.py --only ppo --seeds 0 1 2

Settings are the library's: `Config.for_env(env_id)` (published defaults + rl-baselines3-zoo presets).
Evaluation: 20 deterministic episodes after training.
"""

from __future__ import annotations

import argparse
import time

import torch

# (algorithm, env id, step budget, mean evaluation return to reach)
TARGETS: list[tuple[str, str, int, float]] = [
    ("ppo", "CartPole-v1", 100_000, 475.0),
    ("a2c", "CartPole-v1", 200_000, 475.0),
    ("trpo", "CartPole-v1", 200_000, 475.0),
    ("reinforce", "CartPole-v1", 200_000, 400.0),
    ("ppo", "Pendulum-v1", 200_000, -250.0),
]


def main() -> None:
    from bellman.deep import algorithm

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=None, help="algorithm names to run")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'algo':<10} {'env':<12} {'steps':>7} {'seed':>4} {'eval return':>16} {'target':>7} {'ok':>3} "
          f"{'train s':>8}")
    for name, env_id, steps, target in TARGETS:
        if args.only and name not in args.only:
            continue
        cls = algorithm(name)
        for seed in args.seeds:
            start = time.perf_counter()
            agent = cls(env_id, cls.config_class.for_env(env_id), seed=seed)
            agent.learn(steps, progress=False)
            seconds = time.perf_counter() - start
            mean, std = agent.evaluate(20)
            print(f"{name:<10} {env_id:<12} {agent.step:>7} {seed:>4} {mean:>8.1f} +- {std:>5.1f} {target:>7.0f} "
                  f"{'yes' if mean >= target else 'no':>3} {seconds:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
