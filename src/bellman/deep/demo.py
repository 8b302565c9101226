"""Demo: PPO learns CartPole-v1 (100k steps, the fast preset ``PPOConfig.for_env("CartPole-v1", fast=True)``)
and draws its learning curve."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def run(out: Path, seed: int = 0, steps: int = 100_000, progress: bool = True) -> dict[str, Any]:
    """Train PPO on CartPole-v1, write `out/ppo_cartpole.png`, return the figures (evaluation over 20 episodes)."""
    from bellman.viz import plot_runs
    from bellman.deep.ppo import PPO, PPOConfig

    out = Path(out)
    start = time.perf_counter()
    agent = PPO("CartPole-v1", PPOConfig.for_env("CartPole-v1", fast=True), seed=seed)
    agent.learn(steps, progress=progress)
    seconds = time.perf_counter() - start
    mean, std = agent.evaluate(20)
    rows = agent.logger_rows
    run_metrics = {"step": [r["step"] for r in rows], "episodic_return": [r["episodic_return"] for r in rows]}
    curve = plot_runs([run_metrics], out / "ppo_cartpole.png",
                      title=f"PPO on CartPole-v1 (seed {seed}): eval {mean:.0f} ± {std:.0f}")
    return {"algorithm": "PPO", "env": "CartPole-v1", "steps": agent.step, "seed": seed,
            "mean_return": mean, "std_return": std, "episodes": 20, "train_seconds": round(seconds, 1),
            "curve": str(curve)}


if __name__ == "__main__":
    print(run(Path("out/deep")))
