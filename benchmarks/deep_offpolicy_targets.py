"""The issue's targets for the off-policy and linear methods, with fixed seeds:

    DQN CartPole-v1 >= 475 within 100k steps       (bellman's preset, DQNConfig.for_env)
    DDPG Pendulum-v1 >= -200 within 20k steps       (rl-baselines3-zoo setting, DDPGConfig.for_env)
    linear Q-learning, tile coding, MountainCar-v0 > -200 within 200k steps  (Sutton & Barto 10.1 setting)
    QAC and off-policy actor-critic on CartPole-v1 (no target in the issue beyond learning measurably)

    python benchmarks/deep_offpolicy_targets.py --seeds 0 1 2 [--only dqn ddpg linear qac off-policy-ac]

Each run is evaluated (deterministic policy, 20 episodes) every `every` steps and at the end; the script
prints those evaluations, the first step at which the target was met and the final figure.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import torch


def dqn(seed: int) -> Any:
    from bellman.deep import DQN, DQNConfig
    # bellman's preset: the zoo setting with lr 1e-3 annealed and final eps 0.1; with the zoo's constant rate
    # the policy reaches 500 and then oscillates, below 475 at 100k on seeds 0 and 1 (SB3 too on seed 1)
    return DQN("CartPole-v1", DQNConfig.for_env("CartPole-v1"), seed=seed)


def ddpg(seed: int) -> Any:
    from bellman.deep import DDPG, DDPGConfig
    return DDPG("Pendulum-v1", DDPGConfig.for_env("Pendulum-v1"), seed=seed)


def linear(seed: int) -> Any:
    from bellman.deep import LinearQ, LinearQConfig
    return LinearQ("MountainCar-v0", LinearQConfig(), seed=seed)


def qac(seed: int) -> Any:
    from bellman.deep import QAC
    return QAC("CartPole-v1", seed=seed)


def off_policy_ac(seed: int) -> Any:
    from bellman.deep import OffPolicyAC
    return OffPolicyAC("CartPole-v1", seed=seed)


# name: (make agent, total steps, evaluate every, target, description)
TARGETS: dict[str, tuple[Callable[[int], Any], int, int, float, str]] = {
    "dqn": (dqn, 100_000, 10_000, 475.0, "DQN CartPole-v1"),
    "ddpg": (ddpg, 20_000, 5_000, -200.0, "DDPG Pendulum-v1"),
    "linear": (linear, 200_000, 20_000, -200.0, "linear Q-learning (tile coding) MountainCar-v0"),
    "qac": (qac, 60_000, 10_000, 475.0, "QAC CartPole-v1"),
    "off-policy-ac": (off_policy_ac, 60_000, 10_000, 475.0, "off-policy actor-critic CartPole-v1"),
}


def train_until(agent: Any, until: int, total: int) -> None:
    """Train to `until` steps of a run planned for `total` (schedules such as DQN's eps see the full run)."""
    if not hasattr(agent, "train_iteration"):  # LinearQ has no schedule
        agent.learn(until)
        return
    agent.total_steps = total
    while agent.step < until:
        agent.train_iteration()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="+", choices=sorted(TARGETS), default=list(TARGETS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.only:
        make, total, every, target, what = TARGETS[name]
        print(f"== {what}: target {'>=' if target > 0 else '>'} {target:g} within {total} steps", flush=True)
        for seed in args.seeds:
            agent, start, first = make(seed), time.perf_counter(), None
            curve = []
            for until in range(every, total + 1, every):
                train_until(agent, until, total)
                mean, std = agent.evaluate(20)
                curve.append(f"{mean:.0f}")
                met = mean >= target if target > 0 else mean > target
                if met and first is None:
                    first = until
            seconds = time.perf_counter() - start
            print(f"seed {seed}: final {mean:7.1f} +- {std:5.1f}  first met at {first or '-'}  "
                  f"({seconds:.0f} s incl. evaluations)  curve every {every}: {' '.join(curve)}", flush=True)


if __name__ == "__main__":
    main()
