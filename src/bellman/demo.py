"""`make demo`: the course grid world solved exactly and learned from experience, PPO on CartPole,
the R1-Zero recipe on the built-in tiny language model, and GRPO on a real pretrained one
(SmolLM2-135M-Instruct, installed by `make smollm2`; skipped with the command to install it when absent).

Writes pictures and figures under out/demo/ and prints where they are.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from bellman import viz
from bellman.envs import GridWorld
from bellman.planning import evaluate_policy, policy_iteration, truncated_policy_iteration, value_iteration
from bellman.tabular import q_learning

console = Console(soft_wrap=True)


def foundations(out: Path) -> dict:
    """Value, policy and truncated policy iteration on the course grid world, then off-policy
    Q-learning from uniform-random experience, checked against the exact v*."""
    env = GridWorld()
    planners = {
        "value-iteration": lambda: value_iteration(env.mdp),
        "policy-iteration": lambda: policy_iteration(env.mdp),
        "truncated-pi": lambda: truncated_policy_iteration(env.mdp, sweeps=5),
    }
    figures: dict = {}
    for name, solve in planners.items():
        result = solve()
        path = viz.plot_values_and_policy(env, result.v, result.policy, out / f"{name}.png",
                                          title=f"{name}: {result.iterations} iterations")
        figures[name] = {"iterations": result.iterations, "v_target": float(result.v[env.target_state])}
        console.print(f"  {name:<17} {result.iterations:>4} iterations  v*(target) = "
                      f"{result.v[env.target_state]:.4f}  -> {path}")
    v_star = value_iteration(env.mdp).v
    behaviour = np.full((env.mdp.n_states, env.mdp.n_actions), 1 / env.mdp.n_actions)
    learned = q_learning(env, alpha=0.1, behaviour=behaviour, episodes=200, episode_length=500,
                         random_start=True, seed=0)
    gap = float(np.max(np.abs(evaluate_policy(env.mdp, learned.policy) - v_star)))
    viz.plot_values_and_policy(env, learned.v, learned.policy, out / "q-learning.png",
                               title="Q-learning (off-policy, uniform behaviour)")
    viz.plot_learning_curves(learned.returns, out / "q-learning-curve.png", lengths=learned.lengths)
    figures["q-learning"] = {"max |v_pi_learned - v*|": gap}
    console.print(f"  q-learning        exact value of the learned policy is within {gap:.2e} of v*"
                  f"  -> {out / 'q-learning.png'}")
    return figures


def deep(out: Path) -> dict:
    """PPO on CartPole-v1 for 100k steps, evaluated deterministically over 20 episodes."""
    from bellman.deep import demo

    result = demo.run(out)
    console.print(f"  PPO CartPole-v1: {result['steps']} steps in {result['train_seconds']} s, evaluation "
                  f"{result['mean_return']:.1f} +- {result['std_return']:.1f}  -> {result['curve']}")
    return result


def llm(out: Path) -> dict:
    """The R1-Zero recipe on the built-in tiny model: format reward and accuracy before and after."""
    from bellman.llm import demo

    return demo.run(out)


def llm_real(out: Path) -> dict | None:
    """GRPO on SmolLM2-135M-Instruct asked 2-digit sums as chat: held-out accuracy before and after."""
    from bellman.llm import demo_real

    return demo_real.run(out)


SECTIONS = {"foundations": foundations, "deep": deep, "llm": llm, "llm-real": llm_real}


def main(out: Path = Path("out/demo")) -> None:
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for name, run in SECTIONS.items():
        console.rule(f"[bold]{name}")
        start = time.perf_counter()
        summary[name] = run(out / name)
        console.print(f"  ({time.perf_counter() - start:.1f} s)")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    console.print(f"\nPictures and figures are in [bold]{out}/[/] (summary: {out / 'summary.json'})")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("out/demo"))
