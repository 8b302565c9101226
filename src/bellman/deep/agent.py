"""The common core of every deep RL algorithm: environments, config validation, the training loop,
evaluation, prediction, checkpoints and resumption (the Stable-Baselines3 `BaseAlgorithm` idea, kept flat).

How an algorithm uses it
------------------------
An algorithm is one file with a config dataclass and an `Agent` subclass::

    @dataclass
    class MyConfig(AgentConfig):              # published defaults; say where they come from
        n_steps: int = field(128, "rollout length per env")   # bellman.core.config.field: default, help
        def check(self) -> None:              # range checks; types are checked by Config
            super().check()
            self.require(self.n_steps >= 1, "n_steps", "an int >= 1")

    class My(Agent):
        config_class = MyConfig
        action_spaces = (spaces.Discrete,)    # others raise a TypeError naming the space

        def setup(self) -> None:              # build networks, optimisers, buffers
            self.pi = Policy(self.observation_space, self.action_space, self.config.hidden)
            self.optimizer = torch.optim.Adam(self.pi.parameters(), lr=self.config.learning_rate)

        def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
            ...                               # actions for a batch of encoded observations

        def train_iteration(self) -> dict[str, float]:
            ...                               # interact with `self.env_step(action)`, update,
            return {"loss": ...}              # return the scalars to log (NaN/inf stop training)

An algorithm that can sample on rollout workers (`num_workers` > 0, `bellman.distributed`) implements
`sample()` (collect one iteration's experience with `env_step`: a RolloutBuffer or a tuple of (T, n_envs,
...) arrays) and `update(experience)` instead of `train_iteration` (which is then `update(sample())`), and
names in `rollout_modules` the networks `sample` acts with: PPO, A2C and DQN do.

What the core provides to `setup` / `train_iteration`:
    self.config, self.seed, self.rng (numpy Generator; checkpointed), self.envs (a Gymnasium VectorEnv
    with `config.n_envs` copies), self.observation_space / self.action_space (single-env spaces),
    self.obs (current observations, numpy, one row per env), self.encode(obs) -> float tensor,
    self.env_step(action, active=None) -> Transition, self.reset_envs(), self.step (real environment
    transitions so far), self.total_steps (the target of the running `learn`) and
    self.progress_remaining (1 -> 0 over `learn`, for annealing).
Building blocks beside it: nets (mlp, Policy, ValueNet, ActorCritic, QNet), targets (polyak_update,
td_target), buffers (RolloutBuffer, ReplayBuffer), rollout (collect_rollout: the agent steps, a
RolloutBuffer stores; transition_batch), and in bellman.core: returns (gae, n_step_returns,
discounted_returns, standardize), losses (the PPO losses).

Vector environments use Gymnasium's default NEXT_STEP autoreset: the step after an episode ends only
resets that copy. `env_step` marks such rows `valid=False` (not a transition: zero reward, action
ignored); store or skip them accordingly. For a valid row, `next_obs` is the true next observation, also
at the end of an episode, so a truncated episode can bootstrap from v(next_obs).

With `normalize_obs` / `normalize_reward` the vector env is wrapped in Gymnasium's normalisation wrappers
(`bellman.deep.normalize`): self.obs and the rewards of `env_step` are normalised, episode returns are not.

Checkpoints hold every public attribute that has `state_dict` / `load_state_dict` (networks, optimisers,
buffers, schedulers), the RNG states (python, numpy, torch), the environments' state as plain data with
their RNGs (`bellman.deep.env_state`, so training continues exactly as if never interrupted), the loop
state and the step counter: tensors and plain data only, so loading one cannot run code.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import json
import math
import time
import warnings
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, ClassVar, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from bellman.core import checkpoint
from bellman.core.config import Config, check_int, field
from bellman.core.metrics import Metrics
from bellman.core.progress import Progress
from bellman.core.run import RunDir
from bellman.core.seeding import (check_seed, eval_seed, rng_state, seed_everything, set_rng_state, torch_threads,
                                  worker_seed)
from bellman.deep import env_state, normalize
from bellman.deep.nets import ACTIVATIONS, obs_to_tensor

EnvSource = str | gym.Env | Callable[[], gym.Env]
MAX_ENVS = 65_536  # environment copies in one process: beyond this a vector env is a memory error, not a speed-up


class NonFiniteError(ValueError, FloatingPointError):
    """A loss or another training quantity became NaN or infinite."""


@dataclasses.dataclass
class AgentConfig(Config):
    """Settings shared by all algorithms. ``presets`` are tuned settings by env id (rl-baselines3-zoo),
    ``fast_presets`` bellman's own quicker ones on top of them; ``for_env`` applies both.

    The two torch settings are process-wide and applied when an agent is built. ``flush_denormal`` is off by
    default: it changes float arithmetic for everything else in the process too (numpy included).
    """

    n_envs: int = field(1, "environment copies stepped together")
    gamma: float = field(0.99, "discount factor")
    learning_rate: float = field(3e-4, "optimiser step size")
    hidden: tuple[int, ...] = field((64, 64), "units of each hidden layer of the MLP bodies")
    activation: str = field("tanh", "activation of the MLP bodies (" + ", ".join(sorted(ACTIVATIONS)) + ")")
    vectorized: bool = field(True, "use Gymnasium's numpy-vectorised implementation of the env when it has one "
                                   "(CartPole), else copies in one process")
    torch_threads: int = field(1, "torch intra-op threads")
    flush_denormal: bool = field(False, "treat denormal floats (magnitude < 1.2e-38) as 0 "
                                        "(torch.set_flush_denormal): the CPU's slow path for them can make an Adam "
                                        "step several times slower, e.g. on the ReLU nets of DQN")
    num_workers: int = field(0, "rollout workers sampling on Ray (bellman.distributed), each with a copy of the "
                                "policy; 0: sample in this process")
    envs_per_worker: int = field(0, "env copies each rollout worker steps (0: n_envs / num_workers); worker i "
                                    "steps copies i x envs_per_worker ... of the in-process run")
    ray_address: str | None = field(None, "the Ray cluster of the rollout workers: 'auto' (the one this machine "
                                          "belongs to) or 'ray://host:port'; None: RAY_ADDRESS if set, else a "
                                          "local Ray with this machine's CPUs")
    normalize_obs: bool = field(False, "normalise observations by their running mean and variance "
                                       "(gymnasium.wrappers.vector.NormalizeObservation; checkpointed, frozen in "
                                       "evaluate and predict)")
    normalize_reward: bool = field(False, "divide rewards by the running std of the discounted return "
                                          "(gymnasium.wrappers.vector.NormalizeReward with gamma; checkpointed)")
    clip_obs: float = field(10.0, "clip normalised observations to [-clip_obs, clip_obs] (VecNormalize's 10; "
                                  "inf: off)")
    clip_reward: float = field(10.0, "clip normalised rewards to [-clip_reward, clip_reward] (VecNormalize's 10; "
                                     "inf: off)")

    fast_presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def check(self) -> None:
        self.require(1 <= self.n_envs <= MAX_ENVS, "n_envs", f"an int in [1, {MAX_ENVS}]")
        self.require(0.0 <= self.gamma <= 1.0, "gamma", "a float in [0, 1]")
        self.require(self.learning_rate > 0, "learning_rate", "a float > 0")
        self.require(len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden), "hidden",
                     "a non-empty tuple of ints >= 1")
        self.require(self.activation in ACTIVATIONS, "activation", f"one of {sorted(ACTIVATIONS)}")
        self.require(self.torch_threads >= 1, "torch_threads", "an int >= 1")
        self.require(self.clip_obs > 0, "clip_obs", "a float > 0 (inf: no clipping)")
        self.require(self.clip_reward > 0, "clip_reward", "a float > 0 (inf: no clipping)")
        self.require(self.num_workers >= 0, "num_workers", "an int >= 0 (0: sample in this process)")
        self.require(self.envs_per_worker >= 0, "envs_per_worker", "an int >= 0 (0: n_envs / num_workers)")
        if self.num_workers and self.envs_per_worker:
            self.require(self.n_envs == self.num_workers * self.envs_per_worker, "n_envs",
                         f"num_workers x envs_per_worker = {self.num_workers * self.envs_per_worker}")
        elif self.num_workers:
            self.require(self.n_envs % self.num_workers == 0, "n_envs",
                         f"a multiple of num_workers = {self.num_workers} (or set envs_per_worker)")
        self.require(self.ray_address is None or self.ray_address.strip() != "", "ray_address",
                     "None, 'auto' or 'ray://host:port'")
        if self.normalize_obs or self.normalize_reward:
            self.require(self.num_workers == 0, "num_workers", "0 with normalize_obs or normalize_reward (the "
                                                               "running statistics live in this process)")

    @classmethod
    def for_env(cls, env_id: str | None, fast: bool = False, zoo: bool = False, **changes: Any) -> AgentConfig:
        """The defaults, then the tuned preset for `env_id` if there is one, then (with `fast`) the class's
        quicker setting for it from `fast_presets`, then `changes`. With `zoo`, rl-baselines3-zoo's setting
        for `env_id` read from the rl_zoo3 package (`bellman.deep.zoo`) replaces bellman's presets."""
        for name, flag in (("fast", fast), ("zoo", zoo)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        if zoo:
            if fast:
                raise ValueError("fast and zoo are two different presets; choose one")
            from bellman.deep.zoo import zoo_preset
            return cls.from_dict({**zoo_preset(cls, env_id or "").changes, **changes})
        if fast and (env_id or "") not in cls.fast_presets:
            have = ", ".join(sorted(cls.fast_presets)) or "none"
            raise ValueError(f"{cls.__name__} has no fast preset for {env_id!r}; it has one for: {have}")
        fast_changes = cls.fast_presets[env_id or ""] if fast else {}
        return cls.from_dict({**cls.presets.get(env_id or "", {}), **fast_changes, **changes})


@dataclasses.dataclass
class ReplayConfig(AgentConfig):
    """Settings shared by the replay-based agents (DQN, DDPG), with Stable-Baselines3's names."""

    buffer_size: int = field(1_000_000, "replay capacity (transitions)")
    learning_starts: int = field(100, "env steps of uniform random actions before learning")
    batch_size: int = field(256, "minibatch size")
    tau: float = field(0.005, "target-network update rate (1 copies)")
    train_freq: int = field(1, "env steps between training phases")
    gradient_steps: int = field(1, "updates per training phase")
    anneal_lr: bool = field(False, "decay the learning rate linearly to 0 over the run (the zoo's lin_ rates)")

    def check(self) -> None:
        super().check()
        self.require(self.buffer_size >= 1, "buffer_size", "an int >= 1")
        self.require(self.learning_starts >= 0, "learning_starts", "an int >= 0")
        self.require(self.batch_size >= 1, "batch_size", "an int >= 1")
        self.require(0.0 < self.tau <= 1.0, "tau", "a float in (0, 1]")
        self.require(self.train_freq >= 1, "train_freq", "an int >= 1")
        self.require(self.gradient_steps >= 1, "gradient_steps", "an int >= 1")


class Transition(NamedTuple):
    """One vector step: rows are env copies; `valid` is False on a copy's reset step (not a transition)."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    valid: np.ndarray


def make_vec_env(env: EnvSource, n_envs: int, vectorized: bool = True) -> gym.vector.VectorEnv:
    """`n_envs` copies of `env` (an env id, a Gymnasium env or a factory) as one VectorEnv (NEXT_STEP autoreset)."""
    if isinstance(env, str):
        if env not in gym.registry:
            close = difflib.get_close_matches(env, list(gym.registry), n=3)
            raise ValueError(f"unknown env id {env!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
                             + " (registered ids are in gymnasium.registry, e.g. CartPole-v1, Pendulum-v1)")
        mode = "vector_entry_point" if vectorized and gym.spec(env).vector_entry_point else "sync"
        return gym.make_vec(env, num_envs=n_envs, vectorization_mode=mode)
    if isinstance(env, gym.Env):
        copies = [env] + [copy.deepcopy(env) for _ in range(n_envs - 1)]
        return gym.vector.SyncVectorEnv([lambda e=e: e for e in copies])
    if isinstance(env, gym.vector.VectorEnv):
        raise TypeError("pass an env id, a gymnasium.Env or a factory; the agent builds its own vector env")
    if callable(env):
        def checked() -> gym.Env:
            made = env()
            if not isinstance(made, gym.Env):
                raise TypeError(f"the env factory must return a gymnasium.Env, got {type(made).__name__}")
            return made
        return gym.vector.SyncVectorEnv([checked] * n_envs)
    raise TypeError(f"env must be an env id (str), a gymnasium.Env or a factory, got {type(env).__name__}")


def env_recipe(env: EnvSource) -> str | dict[str, Any] | None:
    """How a checkpoint rebuilds the environment: its id, or the id and kwargs of a `gym.make` env whose
    kwargs are plain data; None for a factory or another object (the caller passes it again on load)."""
    if isinstance(env, str):
        return env
    spec = getattr(env, "spec", None)
    if isinstance(env, gym.Env) and spec is not None and spec.id in gym.registry:
        kwargs = dict(spec.kwargs)
        try:
            json.dumps(kwargs)
        except TypeError:
            return None
        return {"id": spec.id, "kwargs": kwargs}
    return None


def env_name(env: EnvSource) -> str:
    """What a run directory records as the environment: the env id, else the spec id or class name."""
    if isinstance(env, str):
        return env
    spec = getattr(env, "spec", None)
    if spec is not None and getattr(spec, "id", None):
        return spec.id
    return getattr(env, "__qualname__", type(env).__qualname__)


class Agent:
    """Base class: owns the environments, the loop, evaluation and checkpoints (see the module docstring).

    `worker` (used by `bellman.distributed`) builds the copy that rollout worker `worker` samples with: it
    steps `envs_per_worker` env copies seeded seed + worker * envs_per_worker + j (those copies of an
    in-process run); worker 0 draws from the learner's random streams, which travel with its batches, and
    the others from their own (`core.seeding.worker_seed`).
    """

    config_class: ClassVar[type[AgentConfig]] = AgentConfig
    action_spaces: ClassVar[tuple[type[spaces.Space], ...]] = (spaces.Discrete, spaces.Box)
    rollout_modules: ClassVar[tuple[str, ...]] = ()  # the networks `sample` acts with (sent to rollout workers)
    counters: ClassVar[tuple[str, ...]] = ()  # int attributes a checkpoint holds (e.g. updates taken so far)

    def __init__(self, env: EnvSource, config: AgentConfig | dict[str, Any] | None = None, seed: int = 0, *,
                 worker: int | None = None):
        if config is None:
            config = self.config_class()
        elif isinstance(config, dict):
            config = self.config_class.from_dict(config)
        if type(config) is not self.config_class:
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        if config.num_workers and not self.rollout_modules:
            raise ValueError(f"{type(self).__name__} samples in this process only (num_workers must be 0); "
                             f"PPO, A2C and DQN sample on rollout workers")
        self.config, self.seed = config, check_seed(seed)
        seed_everything(self.seed)
        self.rng = np.random.default_rng(self.seed)
        self.env_source = env
        n_envs = config.n_envs if worker is None else config.n_envs // config.num_workers
        self.envs, self.obs_rms, self.return_rms, self._raw_reward = normalize.wrap(
            make_vec_env(env, n_envs, config.vectorized), config.normalize_obs, config.normalize_reward, config.gamma,
            config.clip_obs, config.clip_reward)
        self.observation_space = self.envs.single_observation_space
        self.action_space = self.envs.single_action_space
        if not isinstance(self.action_space, self.action_spaces):
            allowed = " or ".join(s.__name__ for s in self.action_spaces)
            raise TypeError(f"{type(self).__name__} needs a {allowed} action space; {env!r} has {self.action_space}")
        self.step = 0
        self.total_steps = 0
        self.recent_returns: deque[float] = deque(maxlen=100)
        self._new_episodes: list[tuple[float, int]] = []
        self._eval_envs: dict[int, gym.vector.VectorEnv] = {}
        self.logger_rows: list[dict[str, float]] = []
        self.worker_restarts = 0  # rollout workers lost and restarted so far (bellman.distributed)
        self._workers: Any = None  # the rollout workers while `learn` runs with num_workers > 0
        self._worker_states: list[dict[str, Any]] | None = None  # their envs and streams between runs
        self.obs, _ = self.envs.reset(seed=self.seed + (worker or 0) * n_envs)
        self._reset_loop_state()
        with self.runtime():
            self.setup()
        if worker:
            seed_everything(worker_seed(self.seed, worker))
            self.rng = np.random.default_rng(worker_seed(self.seed, worker))

    # ---- what an algorithm implements ------------------------------------------------------------
    def setup(self) -> None:
        """Build networks, optimisers and buffers."""
        raise NotImplementedError

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Actions for a batch of encoded observations."""
        raise NotImplementedError

    def train_iteration(self) -> dict[str, float]:
        """Collect experience with `env_step`, update, return the scalars to log. By default
        `update(sample())`, the sample gathered from the rollout workers when there are some."""
        return self.update(self.sample() if self._workers is None else self._workers.sample())

    def sample(self) -> Any:
        """One iteration's experience, collected with `env_step` (on a rollout worker, the worker's copies):
        a RolloutBuffer or a tuple of (T, n_envs, ...) arrays, so that several workers' join along the envs."""
        raise NotImplementedError(f"{type(self).__name__} implements train_iteration, not sample / update")

    def update(self, experience: Any) -> dict[str, float]:
        """Learn from `sample`'s experience (of every worker); return the scalars to log."""
        raise NotImplementedError(f"{type(self).__name__} implements train_iteration, not sample / update")

    # ---- environment interaction -----------------------------------------------------------------
    def _reset_loop_state(self) -> None:
        n = self.envs.num_envs
        self._prev_done = np.zeros(n, dtype=bool)
        self._ep_return = np.zeros(n)
        self._ep_length = np.zeros(n, dtype=np.int64)

    def reset_envs(self) -> np.ndarray:
        """Start fresh episodes in every copy (continuing the envs' own RNG streams)."""
        self.obs, _ = self.envs.reset()
        self._reset_loop_state()
        return self.obs

    def encode(self, obs: np.ndarray) -> torch.Tensor:
        """A batch of raw observations as the float tensor the networks read."""
        return obs_to_tensor(obs, self.observation_space)

    def env_step(self, action: np.ndarray, active: np.ndarray | None = None) -> Transition:
        """Step every copy with `action` (Box actions are clipped to the bounds for the env only).

        Rows of inactive copies (`active` False) are stepped but not counted, like reset steps.
        """
        obs = self.obs
        env_action = action
        if isinstance(self.action_space, spaces.Box):
            env_action = np.clip(action, self.action_space.low, self.action_space.high)
        next_obs, reward, terminated, truncated, _ = self.envs.step(env_action)
        valid = ~self._prev_done if active is None else ~self._prev_done & active
        done = terminated | truncated
        raw = reward if self._raw_reward is None else self._raw_reward.reward  # episode returns in the env's reward
        self._ep_return += np.where(valid, raw, 0.0)
        self._ep_length += valid
        for i in np.flatnonzero(done & valid):
            self.recent_returns.append(float(self._ep_return[i]))
            self._new_episodes.append((float(self._ep_return[i]), int(self._ep_length[i])))
            self._ep_return[i], self._ep_length[i] = 0.0, 0
        self._prev_done = done
        self.step += int(valid.sum())
        self.obs = next_obs
        return Transition(obs, action, reward, next_obs, terminated, truncated, valid)

    @property
    def progress_remaining(self) -> float:
        """1 at the start of `learn`, 0 at `total_steps` (for learning-rate and clip annealing)."""
        return 1.0 if self.total_steps <= 0 else max(0.0, 1.0 - self.step / self.total_steps)

    def anneal_learning_rate(self, anneal: bool, *optimizers: torch.optim.Optimizer) -> float:
        """Set the rate of `optimizers` (default: `self.optimizer`) to learning_rate, times `progress_remaining`
        when `anneal` (the linear schedule of Stable-Baselines3); returns the rate."""
        lr = self.config.learning_rate * (self.progress_remaining if anneal else 1.0)
        for optimizer in optimizers or (self.optimizer,):
            for group in optimizer.param_groups:
                group["lr"] = lr
        return lr

    @contextlib.contextmanager
    def runtime(self) -> Iterator[None]:
        """The torch settings of the config (`torch_threads`, `flush_denormal`) for the block, restored after:
        an agent changes them for its own work only, never for the rest of the process."""
        flush = self.config.flush_denormal
        with torch_threads(self.config.torch_threads):
            if flush:
                torch.set_flush_denormal(True)
            try:
                yield
            finally:
                if flush:
                    torch.set_flush_denormal(False)  # PyTorch's default; torch has no getter for the current mode

    # ---- training loop ---------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """The settings that define this run (compared when an output directory is resumed; where Ray runs,
        `ray_address`, does not change the run)."""
        config = {k: v for k, v in dataclasses.asdict(self.config).items() if k != "ray_address"}
        return {"algo": type(self).__name__, "env": env_name(self.env_source), "seed": self.seed, "config": config}

    def learn(self, total_steps: int, out: str | Path | None = None, checkpoint_every: int | None = None,
              log_every: int = 1000, progress: bool = True, resume: bool = False) -> Agent:
        """Train until `self.step >= total_steps` (a total, so a resumed agent continues to the same end).

        A metrics row is logged each time the step count passes a multiple of `log_every` (so a resumed run
        logs at the same steps). With `out`, rows go to out/metrics.csv and out/tb (TensorBoard), and a
        checkpoint to out/checkpoint.pt every `checkpoint_every` steps (default: every 10% of the run) and at
        the end, the one before kept as out/checkpoint.prev.pt. `out` is held by this run alone (a lock); an
        `out` that already holds a run is an error unless `resume`, which continues it from its checkpoint
        (into this agent, if it is still at step 0) with the same settings.
        """
        total_steps, log_every = check_int("total_steps", total_steps, 0), check_int("log_every", log_every)
        checkpoint_every = check_int("checkpoint_every", checkpoint_every, allow_none=True)
        run = RunDir(out, self.identity(), resume) if out is not None else contextlib.nullcontext()
        with run, self.runtime():
            ckpt = Path(out) / "checkpoint.pt" if out is not None else None
            if ckpt is not None and run.resuming and self.step == 0 and ckpt.is_file():
                self._restore(checkpoint.load(ckpt))
            with self.rollout_workers():
                self._learn(int(total_steps), ckpt, checkpoint_every, log_every, progress, out)
        return self

    def rollout_workers(self) -> contextlib.AbstractContextManager:
        """With num_workers > 0, the Ray rollout workers `train_iteration` samples with for the block
        (`bellman.distributed.RolloutWorkers`); otherwise nothing."""
        if not self.config.num_workers:
            return contextlib.nullcontext()
        from bellman.distributed.deep import RolloutWorkers
        return RolloutWorkers(self)

    def _learn(self, total_steps: int, ckpt: Path | None, checkpoint_every: int | None, log_every: int,
               progress: bool, out: str | Path | None) -> None:
        self.total_steps = total_steps
        every = checkpoint_every or max(1, total_steps // 10)
        next_ckpt = self.step + every
        start, t_last, step_last = time.perf_counter(), time.perf_counter(), self.step
        self._new_episodes.clear()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}  # iterations that reported each scalar (some report one only now and then)
        with Metrics(out, start_step=self.step) as metrics_log, \
                Progress(self.total_steps, self.step, progress, unit="env step") as bar:
            while self.step < self.total_steps:
                before = self.step
                metrics = self.train_iteration()
                for k, v in metrics.items():
                    if not math.isfinite(v):
                        raise NonFiniteError(f"{type(self).__name__}: {k} became {v} at step {self.step}; "
                                             f"lower the learning rate or check the environment's rewards")
                    sums[k], counts[k] = sums.get(k, 0.0) + float(v), counts.get(k, 0) + 1
                recent = {"return": float(np.mean(list(self.recent_returns)[-20:]))} if self.recent_returns else {}
                bar.advance(self.step - before, **recent)
                if self.step // log_every > step_last // log_every or self.step >= self.total_steps:
                    now = time.perf_counter()
                    episodes = self._new_episodes
                    metrics_log.log({
                        "step": self.step,
                        "episodic_return": float(np.mean([r for r, _ in episodes])) if episodes else math.nan,
                        "episode_length": float(np.mean([n for _, n in episodes])) if episodes else math.nan,
                        **{k: v / counts[k] for k, v in sums.items()},
                        "steps_per_second": (self.step - step_last) / max(now - t_last, 1e-9),
                        "time": now - start,
                        **({"worker_restarts": self.worker_restarts} if self.config.num_workers else {})})
                    self._new_episodes = []
                    sums, counts, t_last, step_last = {}, {}, now, self.step
                if ckpt is not None and (self.step >= next_ckpt or self.step >= self.total_steps):
                    self.save(ckpt, keep_previous=True)
                    next_ckpt = self.step + every
        self.logger_rows = metrics_log.rows

    # ---- using a trained agent -------------------------------------------------------------------
    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Action(s) for one raw observation or a batch (Box actions clipped to the bounds); with normalize_obs
        the observations are normalised with the training statistics, which this does not change."""
        obs = np.asarray(obs)
        single_shape = self.observation_space.shape or ()
        single = obs.shape == tuple(single_shape)
        if not single and obs.shape[1:] != tuple(single_shape):
            raise ValueError(f"obs must have shape {tuple(single_shape)} or (batch, *{tuple(single_shape)}), "
                             f"got {obs.shape}")
        if self.obs_rms is not None:
            obs = self.obs_rms.normalize(obs)  # the training statistics, frozen
        with torch.inference_mode():
            action = self.act(self.encode(obs[None] if single else obs), deterministic).cpu().numpy()
        if isinstance(self.action_space, spaces.Box):
            action = np.clip(action, self.action_space.low, self.action_space.high)
        return action[0] if single else action

    def evaluate(self, episodes: int = 20, deterministic: bool = True) -> tuple[float, float]:
        """Mean and standard deviation of the return over `episodes` fresh episodes, one per env copy,
        seeded from the agent's seed (the same agent gives the same numbers every call). Returns are in the
        env's own reward; observations are normalised by `predict` (statistics frozen)."""
        episodes = check_int("episodes", episodes)
        if episodes > MAX_ENVS:
            raise ValueError(f"episodes must be at most {MAX_ENVS} (one env copy each), got {episodes}")
        if episodes not in self._eval_envs:
            source = copy.deepcopy(self.env_source) if isinstance(self.env_source, gym.Env) else self.env_source
            self._eval_envs[episodes] = make_vec_env(source, episodes, self.config.vectorized)
        envs = self._eval_envs[episodes]
        obs, _ = envs.reset(seed=eval_seed(self.seed))
        returns = np.zeros(episodes)
        finished = np.zeros(episodes, dtype=bool)
        with self.runtime():
            while not finished.all():
                obs, reward, terminated, truncated, _ = envs.step(self.predict(obs, deterministic))
                returns += np.where(finished, 0.0, reward)
                finished |= terminated | truncated
        return float(returns.mean()), float(returns.std())

    # ---- checkpoints -----------------------------------------------------------------------------
    def stateful(self) -> dict[str, Any]:
        """What a checkpoint saves with `state_dict` / `load_state_dict`: every public attribute that has both
        (networks, optimisers, buffers, schedulers, noise processes)."""
        return {k: v for k, v in vars(self).items()
                if hasattr(v, "state_dict") and hasattr(v, "load_state_dict") and not k.startswith("_")}

    def save(self, path: str | Path, keep_previous: bool = False) -> Path:
        """Write everything needed to predict and to continue training, atomically (`bellman.core.checkpoint`):
        tensors and plain data only, the environments included (`bellman.deep.env_state`)."""
        return checkpoint.save({
            "kind": "bellman.deep", "class": type(self).__name__,
            "config": dataclasses.asdict(self.config), "seed": self.seed, "step": self.step,
            "total_steps": self.total_steps, "env_source": env_recipe(self.env_source),
            "envs": env_state.capture(self.envs),
            "state": {k: v.state_dict() for k, v in self.stateful().items()},
            "rng": rng_state(self.rng),
            "loop": {"obs": self.obs, "prev_done": self._prev_done, "ep_return": self._ep_return,
                     "ep_length": self._ep_length, "recent_returns": list(self.recent_returns)},
            "counters": {k: int(getattr(self, k)) for k in self.counters},
            **({"workers": self._workers.states() if self._workers is not None else self._worker_states,
                "worker_restarts": self.worker_restarts} if self.config.num_workers else {}),
        }, path, keep_previous=keep_previous)

    @classmethod
    def _saved_class(cls, name: str, path: str | Path) -> type[Agent]:
        """The class a checkpoint names: looked up among bellman's algorithms and `cls`'s subclasses, never
        imported from a module the file names."""
        import bellman.deep as deep

        known: dict[str, type[Agent]] = {}
        if name in getattr(deep, "__all__", ()):
            found = getattr(deep, name)
            if isinstance(found, type) and issubclass(found, Agent):
                known[name] = found
        stack = [cls]
        while stack:
            c = stack.pop()
            known.setdefault(c.__name__, c)
            stack += c.__subclasses__()
        if name not in known:
            raise TypeError(f"{path} holds a {name}, which is not a bellman algorithm; load it with its own class "
                            f"(MyAgent.load(path))")
        saved = known[name]
        if not issubclass(saved, cls):
            raise TypeError(f"{path} holds a {name}, not a {cls.__name__}")
        return saved

    @classmethod
    def load(cls, path: str | Path, env: EnvSource | None = None) -> Agent:
        """Rebuild a saved agent (`Agent.load` works for any algorithm). An agent trained on an env id (or on
        `gym.make(id, **kwargs)`) is rebuilt from it; one trained on an env factory or a custom env object
        needs it again: `load(path, env=...)`."""
        payload = checkpoint.load(path)
        if payload.get("kind") != "bellman.deep":
            raise TypeError(f"{path} is not a deep-RL agent checkpoint")
        saved_cls = cls._saved_class(payload["class"], path)
        recipe = payload["env_source"]
        if env is None and recipe is None:
            raise ValueError(f"{path} was trained on an env factory or object, which a checkpoint does not hold; "
                             f"pass it again: {cls.__name__}.load(path, env=...)")
        if env is None:
            env = recipe if isinstance(recipe, str) else gym.make(recipe["id"], **recipe["kwargs"])
        config = saved_cls.config_class.from_dict(payload["config"])
        agent = saved_cls(env, config, seed=payload["seed"])
        agent._restore(payload)
        return agent

    def _restore(self, payload: dict[str, Any]) -> None:
        """Load a checkpoint's state into this agent (built with the same class, config and seed)."""
        for k, state in payload["state"].items():
            getattr(self, k).load_state_dict(state)
        self.step, self.total_steps = payload["step"], payload["total_steps"]
        for k, v in payload.get("counters", {}).items():
            setattr(self, k, int(v))
        loop, envs = payload["loop"], payload["envs"]
        if not envs["opaque"]:
            env_state.restore(self.envs, envs)
            self.obs, self._prev_done = loop["obs"], loop["prev_done"]
            self._ep_return, self._ep_length = loop["ep_return"], loop["ep_length"]
        else:
            warnings.warn(f"the environments keep state outside plain data ({', '.join(envs['opaque'][:3])}); "
                          f"resuming with fresh episodes", stacklevel=3)
            self.obs, _ = self.envs.reset(seed=self.seed + self.step)
            self._reset_loop_state()
        self.recent_returns.clear()
        self.recent_returns.extend(loop["recent_returns"])
        set_rng_state(payload["rng"], self.rng)
        self._worker_states = payload.get("workers")
        self.worker_restarts = payload.get("worker_restarts", 0)
