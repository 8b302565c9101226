"""``bellman gridworld``: solve the course grid world with a model (planning) or learn it from episodes.

`solve` runs value iteration, policy iteration or truncated policy iteration on the exact model and
writes DIR/values.png and DIR/result.json. `learn` runs a model-free method of `bellman.tabular` and
writes the learned policy picture, the learning curve and DIR/result.json with the distance of the
learned values, and of the exact value of the learned policy, from v* (sup norm).
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

app = typer.Typer(help="The course grid world: plan with its model or learn it from episodes.", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

SOLVERS = {
    "value-iteration": "value iteration",
    "policy-iteration": "policy iteration",
    "truncated-pi": "truncated policy iteration",
}
EPISODES = ("episodes", "episode_length")
TD = EPISODES + ("alpha", "epsilon", "epsilon_end", "random_start")
# CLI name -> (function of bellman.tabular, the CLI options it takes besides --seed)
LEARNERS = {
    "mc-basic": ("mc_basic", ("iterations",) + EPISODES),
    "mc-es": ("mc_exploring_starts", EPISODES),
    "mc-eps": ("mc_epsilon_greedy", EPISODES + ("epsilon", "epsilon_end", "random_start")),
    "sarsa": ("sarsa", TD),
    "expected-sarsa": ("expected_sarsa", TD),
    "n-step-sarsa": ("n_step_sarsa", TD + ("n",)),
    "q-learning": ("q_learning", TD),
}
BIG_GRID = 250_000  # states above which solving shows a spinner


def _cell(text: str, option: str) -> tuple[int, int]:
    try:
        r, c = (int(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"{option} must be a cell written as 'row,col' (e.g. 3,2), got {text!r}") from None
    return r, c


def _cells(text: str | None) -> list[tuple[int, int]] | None:
    if text is None:
        return None
    return [_cell(part, "--forbidden") for part in text.split(";") if part.strip()]


def _choice(value: str, allowed: dict, option: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {option} {value!r}; choose one of: {', '.join(allowed)}")
    return value


# ---------------------------------------------------------------------------------- grid options
ROWS = typer.Option(5, "--rows", help="Number of rows.")
COLS = typer.Option(5, "--cols", help="Number of columns.")
FORBIDDEN = typer.Option(None, "--forbidden", help="Forbidden cells 'r,c;r,c' ('' for none). "
                         "Default: the course's on 5 x 5, none otherwise.")
TARGET = typer.Option(None, "--target",
                      help="Target cell 'r,c'. Default: (3,2) on 5 x 5, the bottom-right cell otherwise.")
START = typer.Option("0,0", "--start", help="Start cell 'r,c' of episodes.")
GAMMA = typer.Option(0.9, "--gamma", help="Discount factor in [0, 1).")
R_BOUNDARY = typer.Option(-1.0, "--r-boundary", help="Reward for bumping into the boundary.")
R_FORBIDDEN = typer.Option(-1.0, "--r-forbidden", help="Reward for entering a forbidden cell.")
R_TARGET = typer.Option(1.0, "--r-target", help="Reward for entering (or staying on) the target.")
R_OTHER = typer.Option(0.0, "--r-other", help="Reward for any other move.")
SLIP = typer.Option(0.0, "--slip", help="Probability that a uniformly random action is executed instead.")
BLOCK = typer.Option(False, "--block-forbidden", help="Forbidden cells cannot be entered.")
TERMINAL = typer.Option(False, "--terminal-target", help="Reaching the target ends the episode.")
OUT = typer.Option(..., "--out", help="Directory for the pictures and result.json (created if missing).")


def _grid(rows: int, cols: int, forbidden: str | None, target: str | None, start: str, gamma: float,
          r_boundary: float, r_forbidden: float, r_target: float, r_other: float, slip: float,
          block_forbidden: bool, terminal_target: bool) -> Any:
    from bellman.envs.gridworld import GridWorld

    return GridWorld(
        rows, cols, forbidden=_cells(forbidden), target=None if target is None else _cell(target, "--target"),
        start=_cell(start, "--start"), r_boundary=r_boundary, r_forbidden=r_forbidden, r_target=r_target,
        r_other=r_other, gamma=gamma, block_forbidden=block_forbidden, terminal_target=terminal_target, slip=slip,
    )


def _describe(env: Any) -> dict[str, Any]:
    return {
        "n_rows": env.n_rows, "n_cols": env.n_cols, "forbidden": [list(c) for c in env.forbidden],
        "target": list(env.target), "start": list(env.start), "gamma": env.mdp.gamma,
        "r_boundary": env.r_boundary, "r_forbidden": env.r_forbidden, "r_target": env.r_target,
        "r_other": env.r_other, "slip": env.slip, "block_forbidden": env.block_forbidden,
        "terminal_target": env.terminal_target,
    }


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    return path


def _out_dir(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out must be a directory, but {str(path)!r} is a file")
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------------------------------- solve
@app.command()
def solve(
    algo: str = typer.Option("value-iteration", "--algo", help=f"One of: {', '.join(SOLVERS)}."),
    rows: int = ROWS, cols: int = COLS, forbidden: Optional[str] = FORBIDDEN, target: Optional[str] = TARGET,
    start: str = START, gamma: float = GAMMA, r_boundary: float = R_BOUNDARY, r_forbidden: float = R_FORBIDDEN,
    r_target: float = R_TARGET, r_other: float = R_OTHER, slip: float = SLIP, block_forbidden: bool = BLOCK,
    terminal_target: bool = TERMINAL,
    sweeps: Optional[int] = typer.Option(None, "--sweeps", help="Evaluation sweeps j of truncated-pi (default 5)."),
    tol: float = typer.Option(1e-10, "--tol", help="Stop when the sup-norm change of v is below tol."),
    out_dir: Path = OUT,
) -> None:
    """Solve the grid world exactly from its model; write values.png and result.json."""
    from bellman import viz
    from bellman.planning import policy_iteration, truncated_policy_iteration, value_iteration

    _choice(algo, SOLVERS, "--algo")
    if sweeps is not None and algo != "truncated-pi":
        raise ValueError(f"--sweeps applies to --algo truncated-pi only, not {algo}")
    env = _grid(rows, cols, forbidden, target, start, gamma, r_boundary, r_forbidden, r_target, r_other,
                slip, block_forbidden, terminal_target)
    out_dir = _out_dir(out_dir)
    status = err.status(f"{SOLVERS[algo]} on {env.n_rows} x {env.n_cols} ...") \
        if env.mdp.n_states > BIG_GRID else contextlib.nullcontext()
    t = time.perf_counter()
    with status:
        if algo == "value-iteration":
            result = value_iteration(env.mdp, tol=tol, keep_history=False)
        elif algo == "policy-iteration":
            result = policy_iteration(env.mdp, tol=tol, keep_history=False)
        else:
            result = truncated_policy_iteration(env.mdp, sweeps=5 if sweeps is None else sweeps, tol=tol,
                                                keep_history=False)
    seconds = time.perf_counter() - t
    picture = viz.plot_values_and_policy(env, result.v, result.policy, out_dir / "values.png",
                                         title=f"{SOLVERS[algo]}, gamma = {env.mdp.gamma}")
    data = {
        "algo": algo, "grid": _describe(env), "tol": tol, "sweeps": sweeps, "iterations": result.iterations,
        "seconds": seconds, "v": result.v.tolist(), "policy": result.policy.tolist(),
        "actions": result.actions.tolist(), "residuals": result.residuals,
    }
    _write_json(out_dir / "result.json", data)
    out.print(f"{SOLVERS[algo]}: {result.iterations} iterations in {seconds:.3f} s; "
              f"v at start {tuple(env.start)} = {result.v[env.state_of(env.start)]:.4f}, "
              f"max v = {result.v.max():.4f}")
    out.print(f"wrote {picture} and {out_dir / 'result.json'}")


# ---------------------------------------------------------------------------------------- learn
@app.command()
def learn(
    algo: str = typer.Option("q-learning", "--algo", help=f"One of: {', '.join(LEARNERS)}."),
    rows: int = ROWS, cols: int = COLS, forbidden: Optional[str] = FORBIDDEN, target: Optional[str] = TARGET,
    start: str = START, gamma: float = GAMMA, r_boundary: float = R_BOUNDARY, r_forbidden: float = R_FORBIDDEN,
    r_target: float = R_TARGET, r_other: float = R_OTHER, slip: float = SLIP, block_forbidden: bool = BLOCK,
    terminal_target: bool = TERMINAL,
    episodes: Optional[int] = typer.Option(None, "--episodes", help="Episodes (per (s,a) pair and iteration for "
                                           "mc-basic). Default: the method's own."),
    episode_length: Optional[int] = typer.Option(None, "--episode-length", help="Steps per episode at most."),
    iterations: Optional[int] = typer.Option(None, "--iterations", help="Policy iterations of mc-basic."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Learning rate of the TD methods, in (0, 1]."),
    epsilon: Optional[float] = typer.Option(None, "--epsilon", help="Exploration probability of eps-greedy."),
    epsilon_end: Optional[float] = typer.Option(None, "--epsilon-end", help="Decay epsilon linearly to this."),
    n: Optional[int] = typer.Option(None, "--n", help="Steps of the n-step return of n-step-sarsa."),
    random_start: bool = typer.Option(False, "--random-start", help="Start episodes in uniformly drawn states "
                                      "(mc-eps and the TD methods)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same numbers."),
    window: int = typer.Option(50, "--window", help="Episodes in the moving average of the learning curve."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    out_dir: Path = OUT,
) -> None:
    """Learn the grid world from episodes; write policy.png, learning_curve.png and result.json."""
    import numpy as np

    from bellman import tabular, viz
    from bellman.planning import evaluate_policy, greedy_policy, value_iteration

    _choice(algo, LEARNERS, "--algo")
    name, takes = LEARNERS[algo]
    given = {"episodes": episodes, "episode_length": episode_length, "iterations": iterations, "alpha": alpha,
             "epsilon": epsilon, "epsilon_end": epsilon_end, "n": n,
             "random_start": random_start or None}
    given = {k: v for k, v in given.items() if v is not None}
    wrong = [k for k in given if k not in takes]
    if wrong:
        options = ", ".join("--" + k.replace("_", "-") for k in wrong)
        allowed = ", ".join("--" + k.replace("_", "-") for k in takes)
        raise ValueError(f"{options} does not apply to --algo {algo}; it takes {allowed}, --seed")
    env = _grid(rows, cols, forbidden, target, start, gamma, r_boundary, r_forbidden, r_target, r_other,
                slip, block_forbidden, terminal_target)
    out_dir = _out_dir(out_dir)
    t = time.perf_counter()
    result = getattr(tabular, name)(env, **given, seed=seed, progress=progress)
    seconds = time.perf_counter() - t

    v_star = value_iteration(env.mdp, keep_history=False).v
    v_pi = evaluate_policy(env.mdp, result.policy)
    errors = {
        "v_error": float(np.max(np.abs(result.v - v_star))),
        "policy_value_error": float(np.max(np.abs(v_pi - v_star))),
    }
    if result.q is not None:
        errors["greedy_policy_value_error"] = float(
            np.max(np.abs(evaluate_policy(env.mdp, greedy_policy(result.q)) - v_star)))
    policy_png = viz.plot_values_and_policy(env, result.v, result.policy, out_dir / "policy.png",
                                            title=f"{algo}: learned policy and values")
    curve_png = viz.plot_learning_curves({algo: result.returns}, out_dir / "learning_curve.png",
                                         lengths={algo: result.lengths}, window=window,
                                         title=f"{algo} on the {env.n_rows} x {env.n_cols} grid world")
    data = {
        "algo": algo, "grid": _describe(env), "options": given, "seed": seed, "seconds": seconds,
        **errors, "v": result.v.tolist(), "v_star": v_star.tolist(), "v_policy": v_pi.tolist(),
        "q": None if result.q is None else result.q.tolist(), "policy": result.policy.tolist(),
        "returns": np.asarray(result.returns).tolist(), "lengths": np.asarray(result.lengths).tolist(),
    }
    _write_json(out_dir / "result.json", data)
    last = np.asarray(result.returns)[-min(window, len(result.returns)):]
    out.print(f"{algo}: {len(result.returns)} episodes in {seconds:.2f} s; "
              f"mean return of the last {last.size}: {last.mean():.3f}")
    out.print(f"  ||v_learned - v*||_inf = {errors['v_error']:.4f}   "
              f"||v_pi_learned - v*||_inf = {errors['policy_value_error']:.4f}"
              + (f"   greedy: {errors['greedy_policy_value_error']:.4f}" if "greedy_policy_value_error" in errors
                 else ""))
    out.print(f"wrote {policy_png}, {curve_png} and {out_dir / 'result.json'}")
