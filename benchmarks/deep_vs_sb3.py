"""bellman vs Stable-Baselines3 on the same task, same hyper-parameters (rl-baselines3-zoo), same machine,
one process, seeds interleaved so both sides see the same load.

    python benchmarks/deep_vs_sb3.py --algo ppo --seeds 3

Prints, per seed and in total, the training wall-clock of each side, the deterministic evaluation return
(20 episodes) and the wall-clock ratio SB3 / bellman. Each algorithm is one entry of CASES.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import torch

EVAL_EPISODES = 20


@dataclass
class Case:
    env_id: str
    steps: int
    bellman: Callable[[str, int, int], object]  # (env_id, steps, seed) -> trained agent (has .evaluate)
    sb3: Callable[[str, int, int], object]  # (env_id, steps, seed) -> trained SB3 model


def bellman_ppo(env_id: str, steps: int, seed: int):
    from bellman.deep import PPO, PPOConfig
    agent = PPO(env_id, PPOConfig.for_env(env_id), seed=seed)
    agent.learn(steps, progress=False)
    return agent


def sb3_ppo(env_id: str, steps: int, seed: int):
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    # rl-baselines3-zoo hyperparams/ppo.yml, CartPole-v1
    zoo = dict(n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
               learning_rate=lambda f: 1e-3 * f, clip_range=lambda f: 0.2 * f)
    model = PPO("MlpPolicy", make_vec_env(env_id, n_envs=8, seed=seed), seed=seed, device="cpu", **zoo)
    model.learn(steps)
    return model


CASES: dict[str, Case] = {
    "ppo": Case("CartPole-v1", 100_000, bellman_ppo, sb3_ppo),
}


def evaluate_sb3(model, env_id: str, seed: int) -> tuple[float, float]:
    from stable_baselines3.common.evaluation import evaluate_policy
    env = gym.make(env_id)
    env.reset(seed=seed + 1_000_003)
    mean, std = evaluate_policy(model, env, n_eval_episodes=EVAL_EPISODES, deterministic=True)
    return float(mean), float(std)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=sorted(CASES), default="ppo")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="override the case's step budget")
    args = parser.parse_args()
    torch.set_num_threads(1)
    case = CASES[args.algo]
    steps = args.steps or case.steps
    print(f"{args.algo} on {case.env_id}, {steps} steps, {args.seeds} seeds, torch threads 1")
    print(f"{'seed':>4} {'bellman s':>10} {'bellman return':>16} {'sb3 s':>8} {'sb3 return':>16} {'ratio':>6}")
    times = {"bellman": [], "sb3": []}
    scores = {"bellman": [], "sb3": []}
    for seed in range(args.seeds):
        row = {}
        for side in ("bellman", "sb3"):
            start = time.perf_counter()
            model = getattr(case, side)(case.env_id, steps, seed)
            times[side].append(time.perf_counter() - start)
            mean, std = model.evaluate(EVAL_EPISODES) if side == "bellman" else evaluate_sb3(model, case.env_id, seed)
            scores[side].append(mean)
            row[side] = f"{mean:7.1f} +- {std:5.1f}"
        print(f"{seed:>4} {times['bellman'][-1]:>10.1f} {row['bellman']:>16} {times['sb3'][-1]:>8.1f} "
              f"{row['sb3']:>16} {times['sb3'][-1] / times['bellman'][-1]:>6.1f}")
    tb, ts = sum(times["bellman"]), sum(times["sb3"])
    print(f"mean eval return: bellman {statistics.mean(scores['bellman']):.1f}, sb3 {statistics.mean(scores['sb3']):.1f}")
    print(f"total training wall-clock: bellman {tb:.1f} s, sb3 {ts:.1f} s, ratio sb3/bellman {ts / tb:.2f}x")


if __name__ == "__main__":
    main()
