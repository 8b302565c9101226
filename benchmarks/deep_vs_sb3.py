"""bellman vs Stable-Baselines3 on the same task, same hyper-parameters (rl-baselines3-zoo), same machine,
one process, seeds interleaved so both sides see the same load.

    python benchmarks/deep_vs_sb3.py --algo ppo --seeds 3 [--sides sb3 same own]
    python benchmarks/deep_vs_sb3.py --algo dqn --env Acrobot-v1 --seeds 3      # any env with a zoo entry

Prints, per seed and in total, the training wall-clock and CPU time (process time: steadier than wall-clock
on a shared machine) of each side, the deterministic evaluation return
(20 episodes) and the wall-clock ratio SB3 / bellman. bellman runs with exactly SB3's settings ("same")
and, when the case defines one, with its own documented setting for the same sample budget ("own": PPO's
`fast=True` preset, more envs and fewer gradient steps; DQN: its CartPole preset, a lower, annealed learning
rate and more final exploration), so the implementation speed and the speed of the recommended setting are
both visible. Each algorithm is one entry of CASES.
SB3 runs with PyTorch's default float handling (denormals kept); bellman agents here flush denormals to zero
(`AgentConfig.flush_denormal=True`, an opt-in process-wide setting), part of what makes them faster.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import torch

EVAL_EPISODES = 20


@dataclass
class Case:
    env_id: str
    steps: int
    bellman: Callable[[str, int, int, dict], object]  # (env_id, steps, seed, overrides) -> trained agent
    sb3: Callable[..., object]  # (env_id, steps, seed, callback) -> trained SB3 model
    own: tuple[str, dict] | None = None  # (label, bellman config overrides) of bellman's own setting, if any


def bellman_ppo(env_id: str, steps: int, seed: int, overrides: dict):
    from bellman.deep import PPO, PPOConfig
    config = PPOConfig.for_env(env_id, flush_denormal=True, **overrides)  # the preset is rl-zoo's
    agent = PPO(env_id, config, seed=seed)
    agent.learn(steps, progress=False)
    return agent


def sb3_ppo(env_id: str, steps: int, seed: int, callback=None):
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    # rl-baselines3-zoo hyperparams/ppo.yml, CartPole-v1
    zoo = dict(n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
               learning_rate=lambda f: 1e-3 * f, clip_range=lambda f: 0.2 * f)
    model = PPO("MlpPolicy", make_vec_env(env_id, n_envs=8, seed=seed), seed=seed, device="cpu", **zoo)
    model.learn(steps, callback=callback)
    return model


def bellman_dqn(env_id: str, steps: int, seed: int, overrides: dict):
    from bellman.deep import DQN, DQNConfig
    # the rl-baselines3-zoo preset SB3 runs (DQNConfig.for_env gives bellman's own, see CASES)
    config = DQNConfig.from_dict({**DQNConfig.zoo_presets[env_id], "flush_denormal": True, **overrides})
    return DQN(env_id, config, seed=seed).learn(steps, progress=False)


def sb3_dqn(env_id: str, steps: int, seed: int, callback=None):
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_vec_env
    # rl-baselines3-zoo hyperparams/dqn.yml, CartPole-v1
    zoo = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
               target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
               exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]))
    model = DQN("MlpPolicy", make_vec_env(env_id, n_envs=1, seed=seed), seed=seed, device="cpu", **zoo)
    return model.learn(steps, callback=callback)


def bellman_ddpg(env_id: str, steps: int, seed: int, overrides: dict):
    from bellman.deep import DDPG, DDPGConfig
    config = DDPGConfig.for_env(env_id, flush_denormal=True, **overrides)
    return DDPG(env_id, config, seed=seed).learn(steps, progress=False)


def sb3_ddpg(env_id: str, steps: int, seed: int, callback=None):
    import numpy as np
    from stable_baselines3 import DDPG
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.noise import NormalActionNoise
    # rl-baselines3-zoo hyperparams/ddpg.yml, Pendulum-v1
    zoo = dict(gamma=0.98, buffer_size=200_000, learning_starts=10_000, gradient_steps=1, train_freq=1,
               learning_rate=1e-3, policy_kwargs=dict(net_arch=[400, 300]),
               action_noise=NormalActionNoise(np.zeros(1), 0.1 * np.ones(1)))
    model = DDPG("MlpPolicy", make_vec_env(env_id, n_envs=1, seed=seed), seed=seed, device="cpu", **zoo)
    return model.learn(steps, callback=callback)


def zoo_sb3_kwargs(algo: str, env_id: str, n_actions: int) -> tuple[int, bool, dict]:
    """SB3 keyword arguments from rl-baselines3-zoo's own entry (rl_zoo3/hyperparams/<algo>.yml), as the zoo's
    ExpManager builds them: noise_type / noise_std become a NormalActionNoise, policy_kwargs is evaluated with
    torch.nn in scope, lin_X a linear schedule; returns (n_envs, normalize, kwargs)."""
    import numpy as np
    from stable_baselines3.common.noise import NormalActionNoise

    import bellman.deep as deep
    from bellman.deep.zoo import zoo_entries, zoo_preset
    entry = zoo_entries(algo)[zoo_preset(getattr(deep, ZOO_ALGOS[algo]).config_class, env_id).entry]
    kwargs = {k: v for k, v in entry.items() if k not in ("n_timesteps", "policy", "n_envs", "normalize")}
    if "noise_type" in kwargs:
        assert kwargs.pop("noise_type") == "normal"
        std = kwargs.pop("noise_std")
        kwargs["action_noise"] = NormalActionNoise(np.zeros(n_actions), std * np.ones(n_actions))
    if "policy_kwargs" in kwargs:
        kwargs["policy_kwargs"] = eval(kwargs["policy_kwargs"], {"nn": torch.nn, "dict": dict})  # the zoo's own way
    for key in ("learning_rate", "clip_range"):
        if isinstance(kwargs.get(key), str) and kwargs[key].startswith("lin_"):
            x = float(kwargs[key][4:])
            kwargs[key] = lambda f, x=x: x * f
    normalize = entry.get("normalize", False)
    assert normalize in (True, False), f"normalize {normalize!r}: only true / false entries are run here"
    return int(entry.get("n_envs", 1)), normalize, kwargs


def bellman_zoo(cls_name: str):
    def run(env_id: str, steps: int, seed: int, overrides: dict):
        import bellman.deep as deep
        cls = getattr(deep, cls_name)
        config = cls.config_class.for_env(env_id, zoo=True, flush_denormal=True, **overrides)
        return cls(env_id, config, seed=seed).learn(steps, progress=False)
    return run


def sb3_zoo(algo: str):
    def run(env_id: str, steps: int, seed: int, callback=None):
        import stable_baselines3
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.vec_env import VecNormalize
        space = gym.make(env_id).action_space
        n_envs, normalize, kwargs = zoo_sb3_kwargs(algo, env_id, int(space.shape[0]) if space.shape else 1)
        env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
        if normalize:  # the zoo's VecNormalize: observations and rewards, discounted at the algorithm's gamma
            env = VecNormalize(env, gamma=kwargs.get("gamma", 0.99))
        model = getattr(stable_baselines3, algo.upper())("MlpPolicy", env, seed=seed, device="cpu", **kwargs)
        return model.learn(steps, callback=callback)
    return run


ZOO_ALGOS = {"ppo": "PPO", "dqn": "DQN", "ddpg": "DDPG", "td3": "TD3", "sac": "SAC"}


CASES: dict[str, Case] = {
    # PPOConfig.for_env("CartPole-v1", fast=True): 16 envs x 16 steps, 4 epochs at lr 3e-3 (1,560 gradient
    # steps instead of 7,800), the same 100k samples
    "ppo": Case("CartPole-v1", 100_000, bellman_ppo, sb3_ppo, own=("bellman fast", dict(fast=True))),
    # DQNConfig.for_env("CartPole-v1"), bellman's preset: the zoo setting with lr 1e-3 instead of 2.3e-3,
    # annealed linearly to 0, and final eps 0.1 instead of 0.04: the same samples and gradient steps
    "dqn": Case("CartPole-v1", 100_000, bellman_dqn, sb3_dqn,
                own=("bellman preset", dict(learning_rate=1e-3, anneal_lr=True, exploration_final_eps=0.1))),
    "ddpg": Case("Pendulum-v1", 20_000, bellman_ddpg, sb3_ddpg),
    # both sides with rl-baselines3-zoo's td3.yml / sac.yml entry, read from the rl_zoo3 package
    "td3": Case("Pendulum-v1", 20_000, bellman_zoo("TD3"), sb3_zoo("td3")),
    "sac": Case("Pendulum-v1", 20_000, bellman_zoo("SAC"), sb3_zoo("sac")),
}


def sb3_episode_log():
    """An SB3 callback that keeps (env steps so far, return) of every finished training episode (the Monitor's
    raw return, below any VecNormalize), read from the step's infos as SB3's own logger reads them."""
    from stable_baselines3.common.callbacks import BaseCallback

    class EpisodeLog(BaseCallback):
        def __init__(self):
            super().__init__()
            self.episodes: list[tuple[int, float]] = []

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.episodes.append((self.num_timesteps, float(info["episode"]["r"])))
            return True

    return EpisodeLog()


def curve(episodes: list[tuple[int, float]], steps: int, every: int) -> list[float]:
    """Mean return of the training episodes that end in each window of ``every`` env steps (NaN where none),
    the statistic bellman logs as episodic_return every ``log_every`` steps."""
    bins: list[list[float]] = [[] for _ in range(math.ceil(steps / every))]
    for t, r in episodes:
        bins[min(max(t - 1, 0) // every, len(bins) - 1)].append(r)
    return [statistics.mean(b) if b else math.nan for b in bins]


def logged_curve(rows: list[dict], steps: int, every: int) -> list[float]:
    """``curve``'s windows from a bellman agent's metrics rows (logged as the step count passes each multiple
    of ``every``): each row's episodic_return in the window it closes."""
    windows = [math.nan] * math.ceil(steps / every)
    for row in rows:
        windows[max(0, min(round(row["step"] / every) - 1, len(windows) - 1))] = row["episodic_return"]
    return windows


def plot_curves(curves: dict[str, list[list[float]]], every: int, title: str, path) -> None:
    """Training return against env steps, per side: the mean over seeds (each seed's curve smoothed over 10
    windows) and the band between the lowest and highest seed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    warnings.simplefilter("ignore", RuntimeWarning)  # windows where no seed finished an episode stay NaN
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, per_seed in curves.items():
        y = np.array(per_seed, dtype=float)
        smooth = np.array([[np.nanmean(row[max(0, i - 9):i + 1]) if np.isfinite(row[max(0, i - 9):i + 1]).any()
                            else np.nan for i in range(len(row))] for row in y])
        x = (np.arange(y.shape[1]) + 1) * every
        line, = ax.plot(x, np.nanmean(smooth, 0), label=f"{name} ({len(per_seed)} seeds)")
        ax.fill_between(x, np.nanmin(smooth, 0), np.nanmax(smooth, 0), color=line.get_color(), alpha=0.2)
    ax.set(xlabel="env steps", ylabel="training episode return", title=title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def evaluate_sb3(model, env_id: str, seed: int) -> tuple[float, float]:
    """Deterministic return over EVAL_EPISODES; through the training run's VecNormalize statistics, frozen
    and with raw rewards, where it had one (as the zoo evaluates)."""
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
    trained = model.get_vec_normalize_env()
    if trained is None:
        env = gym.make(env_id)
        env.reset(seed=seed + 1_000_003)
    else:
        env = VecNormalize(DummyVecEnv([lambda: gym.make(env_id)]), training=False, norm_reward=False)
        env.obs_rms = trained.obs_rms
        env.seed(seed + 1_000_003)
    mean, std = evaluate_policy(model, env, n_eval_episodes=EVAL_EPISODES, deterministic=True)
    return float(mean), float(std)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=sorted(CASES), default="ppo")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="override the case's step budget")
    parser.add_argument("--env", default=None, help="any env with an rl-baselines3-zoo entry for the algorithm: both "
                                                    "sides run that entry (budget: --steps, else the zoo's)")
    parser.add_argument("--curves", default=None, help="folder for the learning curves: ALGO_ENV.png and .json "
                                                       "(training return per window of env steps, every seed)")
    parser.add_argument("--sides", nargs="+", choices=("sb3", "same", "own"), default=["sb3", "same", "own"],
                        help="which runs to make (sb3 is always made: the ratios need it)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import stable_baselines3  # noqa: F401  one-time imports (torch._dynamo comes with the first manual_seed)
    import bellman.deep  # noqa: F401      outside the timings of whichever side runs first
    torch.manual_seed(0)
    case = CASES[args.algo]
    if args.env:
        from bellman.deep.zoo import zoo_preset
        import bellman.deep as deep
        cls = getattr(deep, ZOO_ALGOS[args.algo])
        budget = zoo_preset(cls.config_class, args.env, strict=False).n_timesteps
        case = Case(args.env, int(budget), bellman_zoo(ZOO_ALGOS[args.algo]), sb3_zoo(args.algo))
    steps = args.steps or case.steps
    print(f"{args.algo} on {case.env_id}, {steps} steps, {args.seeds} seeds, torch threads 1")
    every = 1000  # bellman's log_every: its metrics rows are the windows of the curves
    curves: dict[str, list[list[float]]] = {}

    def sb3(seed: int) -> object:
        torch.set_flush_denormal(False)  # PyTorch's default (a bellman agent built before may have set it)
        log = sb3_episode_log()
        model = case.sb3(case.env_id, steps, seed, log)
        curves.setdefault("sb3", []).append(curve(log.episodes, steps, every))
        return model

    runs = {"sb3": sb3}
    if "same" in args.sides:
        runs["bellman same"] = lambda seed: case.bellman(case.env_id, steps, seed, {})
    if case.own is not None and "own" in args.sides:
        label, overrides = case.own
        runs[label] = lambda seed: case.bellman(case.env_id, steps, seed, overrides)
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    scores: dict[str, list[float]] = {k: [] for k in runs}

    def ratios(name: str, w: float, c: float, w_sb3: float, c_sb3: float) -> str:
        return "" if name == "sb3" else f"  sb3/this: wall {w_sb3 / w:5.2f}x cpu {c_sb3 / c:5.2f}x"

    for seed in range(args.seeds):
        for name, run in runs.items():
            w0, c0 = time.perf_counter(), time.process_time()
            model = run(seed)
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
            mean, std = evaluate_sb3(model, case.env_id, seed) if name == "sb3" else model.evaluate(EVAL_EPISODES)
            scores[name].append(mean)
            if name != "sb3":
                curves.setdefault(name, []).append(logged_curve(model.logger_rows, steps, every))
            print(f"seed {seed}  {name:<14} wall {wall[name][-1]:7.1f} s  cpu {cpu[name][-1]:7.1f} s  "
                  f"eval {mean:7.1f} +- {std:5.1f}"
                  f"{ratios(name, wall[name][-1], cpu[name][-1], wall['sb3'][-1], cpu['sb3'][-1])}", flush=True)
    if args.curves:
        import json
        from pathlib import Path
        folder = Path(args.curves)
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"{args.algo}_{case.env_id}"
        stem.with_suffix(".json").write_text(json.dumps({"env": case.env_id, "algo": args.algo, "steps": steps,
                                                         "every": every, "curves": curves, "eval": scores}))
        plot_curves(curves, every, f"{args.algo.upper()} on {case.env_id} ({steps:,} steps)", stem.with_suffix(".png"))
        print(f"wrote {stem}.png and .json")
    print("total over seeds:")
    for name in runs:
        print(f"  {name:<14} wall {sum(wall[name]):7.1f} s  cpu {sum(cpu[name]):7.1f} s  "
              f"mean eval {statistics.mean(scores[name]):7.1f}  min eval {min(scores[name]):7.1f}"
              f"{ratios(name, sum(wall[name]), sum(cpu[name]), sum(wall['sb3']), sum(cpu['sb3']))}")

if __name__ == "__main__":
    main()
