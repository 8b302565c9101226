"""What every model-free tabular method shares: the result, input checks, eps-greedy policies, episodes.

The hot loops run on the unwrapped environment when the only wrappers are Gymnasium's bookkeeping ones
(OrderEnforcing, PassiveEnvChecker, TimeLimit; a TimeLimit caps the episode length instead), and on
plain Python floats and lists, which avoids the per-call overhead of NumPy scalars on rows of a few actions.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, TimeLimit
from bellman.core.config import check_int
from bellman.core.progress import track

from bellman.mdp import check_policy

BOOKKEEPING_WRAPPERS = (OrderEnforcing, PassiveEnvChecker, TimeLimit)


@dataclass
class TabularResult:
    """What a model-free tabular method learned.

    q: action values (S, A) (None for TD(0), which learns state values only).
    v: state values (S,): sum_a pi(a|s) q(s,a) for control methods, the TD(0) estimate otherwise.
    policy: (S, A) probabilities: greedy, or eps-greedy with the final epsilon, as the method implies.
    returns: per-episode sum of rewards (undiscounted), for learning curves.
    lengths: per-episode number of steps.
    """

    q: np.ndarray | None
    v: np.ndarray
    policy: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray

    @property
    def actions(self) -> np.ndarray:
        """The most probable action of each state, shape (S,)."""
        return self.policy.argmax(axis=1)


# ------------------------------------------------------------------------------------ checks
def check_alpha(alpha: float) -> float:
    if not isinstance(alpha, (int, float, np.floating)) or not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha (the learning rate) must be in (0, 1], got {alpha!r}")
    return float(alpha)


def check_epsilon(epsilon: float, name: str = "epsilon") -> float:
    if not isinstance(epsilon, (int, float, np.floating)) or not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {epsilon!r}")
    return float(epsilon)


def check_seed(seed: Any) -> int | None:
    return check_int("seed", seed, 0, allow_none=True)


def resolve_gamma(env: gym.Env, gamma: float | None) -> float:
    """gamma as given, else the discount of the env's exact model (`env.unwrapped.mdp.gamma`)."""
    if gamma is None:
        mdp = getattr(env.unwrapped, "mdp", None)
        if mdp is None:
            raise ValueError(f"gamma is required: {env!r} has no exact model (env.unwrapped.mdp) to take it from")
        return float(mdp.gamma)
    if not isinstance(gamma, (int, float, np.floating)) or not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
    return float(gamma)


# ------------------------------------------------------------------------------- environment
class Env:
    """A checked discrete env: `reset(state)` -> s and `step(a)` -> (s', r, terminated, truncated, info).

    Raises TypeError unless both spaces are `gymnasium.spaces.Discrete` starting at 0.
    """

    def __init__(self, env: Any, episode_length: int, seed: int | None) -> None:
        if not isinstance(env, gym.Env):
            raise TypeError(f"env must be a gymnasium.Env, got {type(env).__name__}")
        for name in ("observation_space", "action_space"):
            space = getattr(env, name)
            if not isinstance(space, gym.spaces.Discrete) or int(space.start) != 0:
                raise TypeError(
                    f"tabular methods need discrete spaces: env.{name} must be gymnasium.spaces.Discrete "
                    f"starting at 0, got {space!r}"
                )
        self.n_states, self.n_actions = int(env.observation_space.n), int(env.action_space.n)
        self.episode_length = check_int("episode_length", episode_length)
        wrapper, fast = env, True
        while isinstance(wrapper, gym.Wrapper):
            if not isinstance(wrapper, BOOKKEEPING_WRAPPERS):
                fast = False
            elif isinstance(wrapper, TimeLimit):
                self.episode_length = min(self.episode_length, int(wrapper._max_episode_steps))
            wrapper = wrapper.env
        self.env = env
        self.base = env.unwrapped if fast else env
        self.step = self.base.step  # (a) -> (s', r, terminated, truncated, info)
        env.reset(seed=seed)  # through the wrappers once: seeds the env and satisfies OrderEnforcing

    def reset(self, state: int | None = None) -> int:
        """Start an episode at the env's own start, or at `state` (`reset(options={"state": state})`)."""
        if state is None:
            return int(self.base.reset()[0])
        s = int(self.base.reset(options={"state": state})[0])
        if s != state:
            raise ValueError(
                f"{self.env!r} cannot start an episode in a chosen state: reset(options={{'state': {state}}}) "
                f"returned {s}; this method needs an env that supports it, such as bellman's GridWorld"
            )
        return s


def setup(
    env: Any, episodes: int, episode_length: int, gamma: float | None, seed: int | None
) -> tuple[Env, int, float, np.random.Generator]:
    """What every episodic method starts from: the checked env, the number of episodes, gamma and the
    seeded random generator."""
    episodes, seed = check_int("episodes", episodes), check_seed(seed)
    checked = Env(env, episode_length, seed)
    return checked, episodes, resolve_gamma(checked.env, gamma), np.random.default_rng(seed)


# ------------------------------------------------------------------------------------ policies
def epsilon_greedy(q: np.ndarray, epsilon: float) -> np.ndarray:
    """pi(a|s) = 1 - eps (|A|-1)/|A| for the greedy action (lowest index on ties), eps/|A| otherwise."""
    S, A = q.shape
    pi = np.full((S, A), epsilon / A)
    pi[np.arange(S), q.argmax(axis=1)] += 1.0 - epsilon
    return pi


def greedy_action(q_s: list[float]) -> int:
    """argmax_a q(s,a) with ties to the lowest index, on a Python list."""
    return q_s.index(max(q_s))


def epsilon_greedy_action(q_s: list[float], epsilon: float, u: float, u_a: float) -> int:
    """Sample from the eps-greedy policy of q(s,.) with two uniforms: explore if u < eps, then a = floor(u_a |A|)."""
    if u < epsilon:
        return int(u_a * len(q_s))
    return q_s.index(max(q_s))


def sampler(pi: np.ndarray) -> Callable[[int, float], int]:
    """A function (s, u) -> a drawing a ~ pi(.|s) from a uniform u by inverting the row's CDF."""
    cdf = np.cumsum(pi, axis=1).tolist()
    last = pi.shape[1] - 1
    return lambda s, u: min(bisect.bisect_right(cdf[s], u * cdf[s][-1]), last)


def linear_epsilons(epsilon: float, epsilon_end: float | None, episodes: int) -> list[float]:
    """eps for each episode: constant, or decaying linearly from `epsilon` to `epsilon_end`."""
    epsilon = check_epsilon(epsilon)
    if epsilon_end is None:
        return [epsilon] * episodes
    epsilon_end = check_epsilon(epsilon_end, "epsilon_end")
    return np.linspace(epsilon, epsilon_end, episodes).tolist()


def episodes_range(episodes: int, progress: bool, description: str) -> Iterable[int]:
    return track(range(episodes), episodes, progress, description, unit="episode")


def start_state(rng: np.random.Generator, n_states: int, random_start: bool) -> int | None:
    """A uniformly drawn start state, or None for the env's own start."""
    return int(rng.integers(n_states)) if random_start else None


def check_initial(name: str, x: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Initial values: zeros by default, else a finite float array of the given shape."""
    if x is None:
        return np.zeros(shape)
    arr = np.asarray(x, dtype=np.float64)
    if arr.shape != shape or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be a finite array of shape {shape}, got shape {arr.shape}")
    return arr.copy()


# ------------------------------------------------------------------------------------ episodes
def generate_episode(
    env: Env,
    act: Callable[[int, float, float], int],
    rng: np.random.Generator,
    state: int | None = None,
    action: int | None = None,
) -> tuple[list[int], list[int], list[float]]:
    """Follow `act(s, u, u_a)` (u, u_a uniforms) for at most env.episode_length steps.

    Starts at `state` (default: env's reset) with first action `action` (default: from act).
    Returns the lists s_0..s_{T-1}, a_0..a_{T-1}, r_1..r_T.
    """
    u = rng.random((env.episode_length, 2)).tolist()
    s = env.reset(state)
    a = act(s, *u[0]) if action is None else action
    states, actions, rewards = [], [], []
    step = env.step
    for t in range(env.episode_length):
        if t:
            a = act(s, *u[t])
        s2, r, terminated, truncated, _ = step(a)
        states.append(s)
        actions.append(a)
        rewards.append(r)
        if terminated or truncated:
            break
        s = s2
    return states, actions, rewards


def values(q: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """v(s) = sum_a pi(a|s) q(s,a)."""
    return np.einsum("sa,sa->s", pi, q)


def check_return(g: float, episode: int) -> None:
    """No silent NaNs: stop with the episode whose rewards were not finite."""
    if not math.isfinite(g):
        raise FloatingPointError(f"the rewards of episode {episode} sum to {g}; rewards must be finite")
