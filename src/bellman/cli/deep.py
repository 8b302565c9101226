"""``bellman train``, ``bellman eval`` and ``bellman plot``: deep RL from the command line.

torch and gymnasium are imported only when a command runs. The algorithms are ``bellman.deep.ALGORITHMS``;
a config is the algorithm's tuned preset for the env (``Config.for_env``) with ``--set key=value`` changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from bellman.deep import ALGORITHMS


def _write_eval(agent: Any, out: Path, episodes: int) -> dict[str, float]:
    mean, std = agent.evaluate(episodes)
    result = {"mean_return": mean, "std_return": std, "episodes": episodes}
    (out / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def train(
    algo: str = typer.Argument(..., help="one of: " + ", ".join(ALGORITHMS)),
    env: str = typer.Option("CartPole-v1", "--env", help="a Gymnasium env id"),
    steps: Optional[int] = typer.Option(None, "--steps", help="total environment steps (default: the zoo's "
                                        "n_timesteps with --zoo, else 100000)"),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("runs/run"), "--out", help="folder for metrics, checkpoint and eval.json"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="config change key=value (repeatable)"),
    fast: bool = typer.Option(False, "--fast", help="start from the algorithm's fast preset for ENV (PPO: CartPole-v1)"),
    zoo: bool = typer.Option(False, "--zoo", help="start from rl-baselines3-zoo's tuned setting for ENV, read from "
                             "the rl_zoo3 package (pip install --no-deps rl_zoo3)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in OUT from OUT/checkpoint.pt"),
    workers: Optional[int] = typer.Option(None, "--workers", help="rollout workers on Ray (sets num_workers; "
                                          "default: the config's, 0 = in-process)"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="the Ray cluster to join (sets "
                                              "ray_address: auto, ray://host:port; default: a local Ray)"),
    episodes: int = typer.Option(20, "--episodes", help="evaluation episodes at the end"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train ALGO on ENV; OUT gets metrics.csv, TensorBoard events, checkpoint.pt and eval.json. An OUT that
    holds a run is continued with --resume (its config is the checkpoint's), an error without."""
    from bellman.deep import algorithm

    cls = algorithm(algo)
    if resume:
        if set_ or workers is not None or ray_address is not None:
            raise ValueError("--set, --workers and --ray-address cannot change a resumed run; its config is in "
                             "the checkpoint")
        agent = cls.load(out / "checkpoint.pt")
    else:
        changes = cls.config_class.parse(set_ or [])
        changes |= {k: v for k, v in (("num_workers", workers), ("ray_address", ray_address)) if v is not None}
        config = cls.config_class.for_env(env, fast=fast, zoo=zoo, **changes)
        agent = cls(env, config, seed=seed)
    if steps is None:
        from bellman.deep.zoo import zoo_preset
        steps = (zoo_preset(cls.config_class, env).n_timesteps if zoo and not resume else None) or 100_000
    agent.learn(steps, out=out, progress=progress, resume=resume)
    if not resume:
        (out / "config.json").write_text(json.dumps(
            {"algo": algo, "env": env, "seed": seed, "config": agent.config.to_dict()}, indent=2) + "\n")
    result = _write_eval(agent, out, episodes)
    typer.echo(f"{algo} on {env}: {agent.step} steps, eval return {result['mean_return']:.1f} "
               f"+- {result['std_return']:.1f} over {episodes} episodes -> {out}")


def evaluate(
    run: Path = typer.Argument(..., help="a folder written by `bellman train`"),
    episodes: int = typer.Option(20, "--episodes"),
) -> None:
    """Evaluate the checkpoint in RUN deterministically; writes RUN/eval.json."""
    from bellman.deep.agent import Agent

    agent = Agent.load(run / "checkpoint.pt")
    result = _write_eval(agent, run, episodes)
    typer.echo(json.dumps(result))


def plot(
    runs: list[Path] = typer.Argument(..., help="folders written by `bellman train` (e.g. one per seed)"),
    out: Path = typer.Option(Path("curve.png"), "--out"),
    title: Optional[str] = typer.Option(None, "--title"),
) -> None:
    """Learning curve of RUNS: mean episodic return over the runs with a +- 1 std band."""
    from bellman.core.metrics import read_metrics
    from bellman.viz import plot_runs

    typer.echo(str(plot_runs([read_metrics(r) for r in runs], out, title)))


def register(app: typer.Typer) -> None:
    """Add train / eval / plot to the top-level ``bellman`` app."""
    app.command("train")(train)
    app.command("eval")(evaluate)
    app.command("plot")(plot)
