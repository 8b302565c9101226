"""Linear value function approximation (Sutton & Barto 2018, "Reinforcement Learning: An Introduction",
2nd ed., chapters 9-10; Zhao 2025, "Mathematical Foundations of Reinforcement Learning", chapter 8).

A value is a dot product of a weight vector with a feature vector, v^(s, w) = phi(s)^T w, and for
actions q^(s, a, W) = phi(s)^T W[a] (one weight vector per action, i.e. phi(s, a) = e_a (x) phi(s)).

Features (Sutton & Barto 9.5): `OneHot` (the tabular case), `Polynomial`, `Fourier` and `TileCoding`.
Any callable obs -> 1-D array works as a feature map; the classes here are the usual ones.

Algorithms:
- `td_linear`: semi-gradient TD(0) for v_pi, w <- w + alpha [r + gamma phi(s')^T w - phi(s)^T w] phi(s)
  (Sutton & Barto 9.3).
- `td_fixed_point`: the point linear TD converges to, w_TD = A^{-1} b with
  A = Phi^T D (I - gamma P_pi) Phi and b = Phi^T D r_pi, D the on-policy state distribution (S&B 9.4).
- `LinearQ`: episodic semi-gradient Sarsa or Q-learning with linear features (S&B 10.1, 6.5).

Everything here is NumPy: the updates are a handful of vector operations per step.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from bellman.core.config import check_int
from bellman.core.progress import Progress

from bellman.mdp import TabularMDP

Features = Callable[[Any], np.ndarray]


# ------------------------------------------------------------------------------------- features
def _bounds(low: Any, high: Any) -> tuple[np.ndarray, np.ndarray]:
    low = np.atleast_1d(np.asarray(low, dtype=np.float64))
    high = np.atleast_1d(np.asarray(high, dtype=np.float64))
    if low.ndim != 1 or low.shape != high.shape:
        raise ValueError(f"low and high must be 1-D of the same length, got shapes {low.shape} and {high.shape}")
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValueError(f"low and high must be finite (clip unbounded observations first), got {low} and {high}")
    if not (high > low).all():
        raise ValueError(f"every high must exceed its low, got low={low}, high={high}")
    return low, high


class OneHot:
    """phi(s) = e_s for s in 0..n-1: linear methods become their tabular versions (S&B 9.5)."""

    def __init__(self, n: int) -> None:
        self.n_features = check_int("n", n, 1)

    def __call__(self, s: Any) -> np.ndarray:
        s = int(s)
        if not 0 <= s < self.n_features:
            raise ValueError(f"OneHot({self.n_features}) got state {s}, allowed 0..{self.n_features - 1}")
        phi = np.zeros(self.n_features)
        phi[s] = 1.0
        return phi


class _Scaled:
    """Base for features of a vector x scaled to [0, 1]^k from the box [low, high]."""

    def __init__(self, low: Any, high: Any) -> None:
        self.low, self.high = _bounds(low, high)

    def _unit(self, obs: Any) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float64).reshape(-1)
        if x.shape != self.low.shape:
            raise ValueError(f"expected an observation of {self.low.size} numbers, got shape {np.shape(obs)}")
        return np.clip((x - self.low) / (self.high - self.low), 0.0, 1.0)


class Polynomial(_Scaled):
    """All monomials prod_j x_j^{c_j} of total degree sum_j c_j <= degree of x scaled to [0, 1]^k.

    For two inputs (x, y) and degree 2 this is [1, x, y, x^2, xy, y^2], the course's example
    (S&B 9.5.1 describe the same construction).
    """

    def __init__(self, low: Any, high: Any, degree: int = 2) -> None:
        super().__init__(low, high)
        degree = check_int("degree", degree, 0)
        k = self.low.size
        exps = [c for c in itertools.product(range(degree + 1), repeat=k) if sum(c) <= degree]
        self.c = np.array(sorted(exps, key=lambda c: (sum(c), tuple(-e for e in c))), dtype=np.float64)
        self.n_features = len(self.c)

    def __call__(self, obs: Any) -> np.ndarray:
        return np.prod(self._unit(obs)[None, :] ** self.c, axis=1)


class Fourier(_Scaled):
    """Fourier cosine basis phi_c(x) = cos(pi c^T x), c in {0..order}^k, x scaled to [0, 1]^k (S&B 9.5.2)."""

    def __init__(self, low: Any, high: Any, order: int = 3) -> None:
        super().__init__(low, high)
        order = check_int("order", order, 0)
        self.c = np.array(list(itertools.product(range(order + 1), repeat=self.low.size)), dtype=np.float64)
        self.n_features = len(self.c)

    def __call__(self, obs: Any) -> np.ndarray:
        return np.cos(np.pi * (self.c @ self._unit(obs)))


class TileCoding(_Scaled):
    """Binary features from `n_tilings` grids over the box, each offset by a fraction of a tile (S&B 9.5.4).

    Each tiling has `tiles` tiles per dimension across [low, high] plus one for the offset; tiling i is
    displaced by i * (1, 3, 5, ...) / n_tilings of a tile width (the asymmetric offsets S&B recommend).
    Exactly one tile per tiling is active. With `hash_size` the tile index is hashed into that many
    features (S&B's hashing, for large spaces). `indices(obs)` returns the active tiles.
    """

    def __init__(self, low: Any, high: Any, n_tilings: int = 8, tiles: int = 8, hash_size: int | None = None) -> None:
        super().__init__(low, high)
        self.n_tilings = check_int("n_tilings", n_tilings, 1)
        self.tiles = check_int("tiles", tiles, 1)
        k = self.low.size
        self.dims = (self.tiles + 1,) * k
        self.tiling_size = math.prod(self.dims)
        i = np.arange(self.n_tilings)[:, None]
        self.offsets = (i * (2 * np.arange(k)[None, :] + 1) / self.n_tilings) % 1.0
        self.hash_size = None if hash_size is None else check_int("hash_size", hash_size, 1)
        self.n_features = self.hash_size or self.n_tilings * self.tiling_size
        self._base = np.arange(self.n_tilings) * self.tiling_size

    def indices(self, obs: Any) -> np.ndarray:
        """The active feature of each tiling, shape (n_tilings,)."""
        coords = np.floor(self._unit(obs)[None, :] * self.tiles + self.offsets).astype(np.int64)
        idx = self._base + np.ravel_multi_index(tuple(coords.T), self.dims)
        if self.hash_size is not None:  # Knuth's multiplicative hash, then modulo the table size
            idx = (idx.astype(np.uint64) * np.uint64(2654435761) % np.uint64(self.hash_size)).astype(np.int64)
        return idx

    def __call__(self, obs: Any) -> np.ndarray:
        phi = np.zeros(self.n_features)
        phi[self.indices(obs)] = 1.0
        return phi


def feature_matrix(features: Features, observations: Any) -> np.ndarray:
    """Phi with row i = phi(observations[i]), shape (n, n_features)."""
    return np.stack([np.asarray(features(o), dtype=np.float64) for o in observations])


# ----------------------------------------------------------------------------- linear TD for v_pi
def stationary_distribution(P_pi: Any) -> np.ndarray:
    """d with d^T P_pi = d^T and sum(d) = 1 (unique when the chain under pi is irreducible)."""
    S = P_pi.shape[0]
    e = np.zeros(S)
    e[-1] = 1.0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", spla.MatrixRankWarning)
            if sp.issparse(P_pi):
                M = (sp.identity(S, format="lil") - P_pi.T).tolil()
                M[S - 1, :] = np.ones(S)  # replace one (redundant) balance equation by sum(d) = 1
                d = spla.spsolve(M.tocsc(), e)
            else:
                M = np.eye(S) - np.asarray(P_pi).T
                M[-1] = 1.0
                d = np.linalg.solve(M, e)
    except (RuntimeError, np.linalg.LinAlgError, spla.MatrixRankWarning):
        d = np.full(S, np.nan)
    if not np.isfinite(d).all() or d.min() < -1e-10:
        raise ValueError("P_pi has no unique stationary distribution (the chain under pi is not irreducible); "
                         "use a policy that visits every state or pass the weighting d")
    return np.clip(d, 0.0, None) / np.clip(d, 0.0, None).sum()


def td_fixed_point(mdp: TabularMDP, policy: Any, Phi: np.ndarray, d: np.ndarray | None = None) -> np.ndarray:
    """w_TD solving A w = b, A = Phi^T D (I - gamma P_pi) Phi, b = Phi^T D r_pi (S&B 9.4, eq. 9.12).

    Args:
        mdp: the exact model.
        policy: (S, A) probabilities or (S,) actions.
        Phi: feature matrix (S, n_features), row s = phi(s).
        d: state weighting (S,); default the stationary distribution of P_pi (on-policy TD's limit).
    """
    pi = mdp.check_policy(policy)
    Phi = np.asarray(Phi, dtype=np.float64)
    if Phi.ndim != 2 or Phi.shape[0] != mdp.n_states:
        raise ValueError(f"Phi must have shape ({mdp.n_states}, n_features), got {Phi.shape}")
    P_pi = mdp.P_pi(pi)
    d = stationary_distribution(P_pi) if d is None else np.asarray(d, dtype=np.float64)
    if d.shape != (mdp.n_states,) or d.min() < 0:
        raise ValueError(f"d must be a non-negative weighting of shape ({mdp.n_states},), got shape {d.shape}")
    DPhi = d[:, None] * Phi
    A = DPhi.T @ (Phi - mdp.gamma * (P_pi @ Phi))
    b = DPhi.T @ mdp.r_pi(pi)
    return np.linalg.lstsq(A, b, rcond=None)[0]  # the minimum-norm solution when features are redundant


def _as_policy(policy: Any, env: gym.Env) -> Callable[[Any, np.random.Generator], Any]:
    """A callable (obs, rng) -> action from a callable or an (S, A) table of probabilities."""
    if callable(policy):
        return policy
    if not isinstance(env.observation_space, gym.spaces.Discrete) or not isinstance(env.action_space, gym.spaces.Discrete):
        raise TypeError("a policy table needs Discrete observations and actions; pass a callable (obs, rng) -> action")
    pi = np.asarray(policy, dtype=np.float64)
    S, A = int(env.observation_space.n), int(env.action_space.n)
    if pi.shape != (S, A) or pi.min() < 0 or not np.allclose(pi.sum(axis=1), 1.0):
        raise ValueError(f"a policy table must be ({S}, {A}) with rows that are distributions, got shape {pi.shape}")
    cdf = np.cumsum(pi, axis=1)
    return lambda s, rng: min(int(np.searchsorted(cdf[int(s)], rng.random(), side="right")), A - 1)


def td_linear(
    env: gym.Env,
    policy: Any,
    features: Features,
    *,
    gamma: float,
    alpha: float | Callable[[int], float],
    steps: int,
    seed: int = 0,
    w0: np.ndarray | None = None,
) -> np.ndarray:
    """Semi-gradient TD(0) with linear features for v_pi (Sutton & Barto 2018, section 9.3; Zhao 2025, 8.2).

    Follows pi on `env` for `steps` transitions (resetting when an episode ends) and updates
    w <- w + alpha_t [r + gamma phi(s')^T w - phi(s)^T w] phi(s), with phi(s')^T w = 0 after termination.

    Args:
        env: a Gymnasium env.
        policy: (S, A) probabilities (Discrete spaces) or a callable (obs, rng) -> action.
        features: obs -> feature vector phi(obs).
        gamma: discount in [0, 1].
        alpha: constant step size, or a schedule t -> alpha_t (t = 0, 1, ...).
        steps: number of transitions.
        seed: seeds the env reset and the policy's random numbers.
        w0: initial weights (default zeros).
    Returns:
        the weights w.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    steps = check_int("steps", steps, 0)
    step_size = alpha if callable(alpha) else (lambda t: alpha)
    if not callable(alpha) and not alpha > 0:
        raise ValueError(f"alpha must be a positive number or a schedule t -> alpha_t, got {alpha}")
    pi = _as_policy(policy, env)
    if isinstance(env.observation_space, gym.spaces.Discrete):  # look phi(s) up in Phi instead of recomputing
        Phi = feature_matrix(features, range(int(env.observation_space.n)))
        features = lambda s: Phi[int(s)]
    rng = np.random.default_rng(seed)
    s, _ = env.reset(seed=seed)
    phi = np.asarray(features(s), dtype=np.float64)
    w = np.zeros(phi.size) if w0 is None else np.array(w0, dtype=np.float64)
    if w.shape != phi.shape:
        raise ValueError(f"w0 must have shape {phi.shape} (the number of features), got {w.shape}")
    for t in range(steps):
        s_next, r, terminated, truncated, _ = env.step(pi(s, rng))
        phi_next = np.asarray(features(s_next), dtype=np.float64)
        td_target = r + (0.0 if terminated else gamma * phi_next @ w)
        delta = td_target - phi @ w
        w += step_size(t) * delta * phi
        if terminated or truncated:
            s_next, _ = env.reset()
            phi_next = np.asarray(features(s_next), dtype=np.float64)
        s, phi = s_next, phi_next
    if not np.isfinite(w).all():
        raise ValueError("td_linear diverged (non-finite weights): lower alpha or rescale the features")
    return w


# ------------------------------------------------------------------ Sarsa / Q-learning with features
@dataclass
class LinearQConfig:
    """Settings of `LinearQ`. Defaults follow Sutton & Barto 2018, section 10.1 (Mountain Car): 8 tilings
    of 8 x 8 tiles, alpha = 0.5 / 8, eps = 0 (zero weights are optimistic when every reward is -1), gamma = 1.

    Args:
        method: "q_learning" (target max_a' q(s', a')) or "sarsa" (target q(s', a'), a' the next action).
        alpha: step size of w <- w + alpha delta phi(s).
        gamma: discount in [0, 1].
        epsilon: exploration of the eps-greedy behaviour policy.
        n_tilings, tiles, hash_size: the tile coding built when no features are given and observations
            are a bounded Box (Discrete observations get one-hot features).
    """

    method: str = "q_learning"
    alpha: float = 0.5 / 8
    gamma: float = 1.0
    epsilon: float = 0.0
    n_tilings: int = 8
    tiles: int = 8
    hash_size: int | None = None

    def __post_init__(self) -> None:
        if self.method not in ("q_learning", "sarsa"):
            raise ValueError(f"method must be 'q_learning' or 'sarsa', got {self.method!r}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")
        check_int("n_tilings", self.n_tilings, 1)
        check_int("tiles", self.tiles, 1)
        if self.hash_size is not None:
            check_int("hash_size", self.hash_size, 1)


def _make_env(env: Any) -> gym.Env:
    if isinstance(env, str):
        try:
            return gym.make(env)
        except gym.error.Error as e:
            raise ValueError(f"unknown environment id {env!r}: {e}") from None
    if isinstance(env, gym.Env):
        return env
    if callable(env):
        return _make_env(env())
    raise TypeError(f"env must be a Gymnasium env id, a gymnasium.Env or a factory returning one, got {type(env).__name__}")


class LinearQ:
    """Episodic semi-gradient Sarsa / Q-learning with linear features (S&B 10.1 and 6.5).

    q^(s, a) = phi(s)^T W[a]; after each transition
    W[a] <- W[a] + alpha [r + gamma q^(s', a') - q^(s, a)] phi(s), with a' the next eps-greedy action
    (Sarsa) or argmax_a' q^(s', a') (Q-learning), and no bootstrap after termination.

    Args:
        env: a Gymnasium env id, env or env factory with Discrete actions.
        config: a `LinearQConfig`.
        seed: seeds the env and exploration; the same seed gives the same weights.
        features: obs -> phi(obs); default one-hot (Discrete observations) or tile coding over the Box.
    """

    def __init__(self, env: Any, config: LinearQConfig | None = None, seed: int = 0, features: Features | None = None) -> None:
        self.env_spec = env if isinstance(env, str) else None
        self.env = _make_env(env)
        self.config = config or LinearQConfig()
        if not isinstance(self.config, LinearQConfig):
            raise TypeError(f"config must be a LinearQConfig, got {type(self.config).__name__}")
        if not isinstance(self.env.action_space, gym.spaces.Discrete):
            raise TypeError(
                f"LinearQ needs a Discrete action space, got {self.env.action_space}; "
                "use DDPG for continuous actions"
            )
        self.features = features or self._default_features(self.env.observation_space)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        n_features = np.asarray(self.features(self.env.observation_space.sample())).size
        self.W = np.zeros((int(self.env.action_space.n), n_features))
        self.step = 0
        self.episode_returns: list[float] = []
        self._obs: Any = None

    def _default_features(self, space: gym.Space) -> Features:
        c = self.config
        if isinstance(space, gym.spaces.Discrete):
            return OneHot(int(space.n))
        if isinstance(space, gym.spaces.Box) and np.isfinite(space.low).all() and np.isfinite(space.high).all():
            return TileCoding(space.low.ravel(), space.high.ravel(), c.n_tilings, c.tiles, c.hash_size)
        raise TypeError(f"no default features for observation space {space}; pass features=...")

    def q(self, obs: Any) -> np.ndarray:
        """q^(obs, a) for every action a."""
        return self.W @ self.features(obs)

    def predict(self, obs: Any, deterministic: bool = True) -> int:
        """Greedy action (ties to the lowest index), or eps-greedy with `deterministic=False`."""
        q = self.q(obs)
        return int(np.argmax(q)) if deterministic else self._behave(q)

    def _behave(self, q: np.ndarray) -> int:
        """eps-greedy with random tie-breaking among the greedy actions."""
        if self.rng.random() < self.config.epsilon:
            return int(self.rng.integers(q.size))
        return int(self.rng.choice(np.flatnonzero(q == q.max())))

    def learn(self, total_steps: int, progress: bool = False) -> "LinearQ":
        """Run Sarsa or Q-learning until `self.step` reaches `total_steps` (a total, as in `Agent.learn`)."""
        total_steps = check_int("total_steps", total_steps, 0)
        self._shown = min(self.step, total_steps)
        if self._obs is None:
            self._start_episode(seed=self.seed if self.step == 0 else None)
        with Progress(total_steps, min(self.step, total_steps), progress, unit="env step") as bar:
            self._run(total_steps, bar)
        return self

    def _run(self, total_steps: int, bar: Progress) -> None:
        c, W = self.config, self.W
        while self.step < total_steps:
            phi, a = self._phi, self._a
            s_next, r, terminated, truncated, _ = self.env.step(a)
            phi_next = self.features(s_next)
            q_next = W @ phi_next
            a_next = self._behave(q_next)
            bootstrap = q_next[a_next] if c.method == "sarsa" else q_next.max()
            td_target = r + (0.0 if terminated else c.gamma * bootstrap)
            delta = td_target - W[a] @ phi
            W[a] += c.alpha * delta * phi
            self.step += 1
            self._return += float(r)
            if not np.isfinite(delta):
                raise ValueError(f"LinearQ diverged at step {self.step}: the TD error is {delta}; lower alpha")
            if terminated or truncated:
                self.episode_returns.append(self._return)
                self._start_episode()
                bar.advance(self.step - self._shown, **{"return": float(np.mean(self.episode_returns[-20:]))})
                self._shown = self.step
            else:
                self._phi, self._a = phi_next, a_next

    def _start_episode(self, seed: int | None = None) -> None:
        self._obs, _ = self.env.reset(seed=seed)
        self._phi = self.features(self._obs)
        self._a = self._behave(self.W @ self._phi)
        self._return = 0.0

    def evaluate(self, episodes: int = 20, seed: int = 10_000) -> tuple[float, float]:
        """Mean and standard deviation of the greedy policy's return over `episodes` episodes."""
        episodes = check_int("episodes", episodes, 1)
        env = _make_env(self.env_spec) if self.env_spec else self.env
        returns = []
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            done, g = False, 0.0
            while not done:
                obs, r, terminated, truncated, _ = env.step(self.predict(obs))
                g += float(r)
                done = terminated or truncated
            returns.append(g)
        if env is self.env:  # the training episode was interrupted; start a fresh one next time
            self._obs = None
        return float(np.mean(returns)), float(np.std(returns))

    def save(self, path: str | Path) -> Path:
        """Write config, weights, step counter and random state to `path`, atomically (temp file, fsync,
        rename). A loaded agent continues training from a fresh episode."""
        from bellman.core import checkpoint

        return checkpoint.save({
            "kind": "bellman.deep.linear", "config": asdict(self.config), "W": self.W, "seed": self.seed,
            "step": self.step, "rng": self.rng.bit_generator.state, "episode_returns": self.episode_returns,
            "env": self.env_spec,
        }, path)

    @classmethod
    def load(cls, path: str | Path, env: Any = None, features: Features | None = None) -> "LinearQ":
        """Rebuild an agent saved with `save` (pass `env` when it was not created from an env id)."""
        from bellman.core import checkpoint

        state = checkpoint.load(path)
        if state.get("kind") != "bellman.deep.linear":
            raise TypeError(f"{path} is not a LinearQ checkpoint")
        env = env if env is not None else state["env"]
        if env is None:
            raise ValueError(f"{path} was saved from an env object, not an id: pass env=... to load it")
        config = LinearQConfig(**{k: v for k, v in state["config"].items() if k in {f.name for f in fields(LinearQConfig)}})
        agent = cls(env, config, seed=state["seed"], features=features)
        if agent.W.shape != state["W"].shape:
            raise ValueError(f"saved weights have shape {state['W'].shape}, these features give {agent.W.shape}")
        agent.W[:] = state["W"]
        agent.step = state["step"]
        agent.rng.bit_generator.state = state["rng"]
        agent.episode_returns = list(state["episode_returns"])
        return agent
