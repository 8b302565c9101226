"""Observation and reward normalisation with Gymnasium's own vector wrappers (what Stable-Baselines3's
VecNormalize does): `gymnasium.wrappers.vector.NormalizeObservation` maps each observation to
(o - mean) / sqrt(var + eps) with the running mean and variance of all observations seen;
`gymnasium.wrappers.vector.NormalizeReward` divides each reward by the running standard deviation of the
discounted return R_t = gamma (1 - terminated) R_{t-1} + r_t (Engstrom et al. 2020, "Implementation Matters
in Deep RL", sec. 3). As VecNormalize, the normalised observations and rewards are then clipped to
[-clip_obs, clip_obs] and [-clip_reward, clip_reward] (10 each by default; inf: no clipping), with
`gymnasium.wrappers.vector.TransformObservation` and `ClipReward`.

The agent trains on the wrapped vector env and keeps the running statistics as `RunningStats` (state_dict /
load_state_dict, so its checkpoint holds them). `evaluate` and `predict` normalise raw observations with the
statistics frozen (never updated by them); episode returns are logged in the env's own reward (`RawReward`).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers.utils import RunningMeanStd
from gymnasium.wrappers.vector import ClipReward, NormalizeObservation, NormalizeReward, TransformObservation


class RawReward(gym.vector.VectorWrapper):
    """Keeps the reward of the last step as the env gave it (`reward`), below the reward normalisation."""

    def __init__(self, env: gym.vector.VectorEnv):
        super().__init__(env)
        self.reward = np.zeros(self.num_envs)

    def step(self, actions: Any) -> tuple[Any, ...]:
        out = self.env.step(actions)
        self.reward = np.asarray(out[1], dtype=np.float64)
        return out


class RunningStats:
    """The running mean, variance and count of a normalisation wrapper (its `RunningMeanStd`), with
    state_dict / load_state_dict for checkpoints and `normalize` with the statistics frozen."""

    def __init__(self, wrapper: NormalizeObservation | NormalizeReward, rms: RunningMeanStd,
                 clip: float = np.inf):
        self.wrapper, self.rms, self.clip = wrapper, rms, clip

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """clip((obs - mean) / sqrt(var + eps)), the wrappers' formula, without updating the statistics."""
        z = (obs - self.rms.mean) / np.sqrt(self.rms.var + self.wrapper.epsilon)
        return np.clip(z, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": np.array(self.rms.mean), "var": np.array(self.rms.var), "count": float(self.rms.count)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rms.mean = np.array(state["mean"], dtype=self.rms.mean.dtype)
        self.rms.var = np.array(state["var"], dtype=self.rms.var.dtype)
        self.rms.count = float(state["count"])


def wrap(envs: gym.vector.VectorEnv, normalize_obs: bool, normalize_reward: bool, gamma: float,
         clip_obs: float = np.inf, clip_reward: float = np.inf
         ) -> tuple[gym.vector.VectorEnv, RunningStats | None, RunningStats | None, RawReward | None]:
    """`envs` with the normalisations asked for, the observation and return statistics (None where off) and
    the wrapper that keeps the raw reward (None without reward normalisation)."""
    obs_stats = return_stats = raw = None
    if normalize_reward:
        raw = RawReward(envs)
        envs = norm = NormalizeReward(raw, gamma=gamma)
        if np.isfinite(clip_reward):
            envs = ClipReward(envs, -clip_reward, clip_reward)
        return_stats = RunningStats(norm, norm.return_rms)
    if normalize_obs:
        if not isinstance(envs.single_observation_space, spaces.Box):
            raise TypeError(f"normalize_obs needs a Box observation space, got {envs.single_observation_space}")
        envs = norm = NormalizeObservation(envs)
        if np.isfinite(clip_obs):
            envs = TransformObservation(envs, lambda o: np.clip(o, -clip_obs, clip_obs),
                                        envs.observation_space)
        obs_stats = RunningStats(norm, norm.obs_rms, clip_obs)
    return envs, obs_stats, return_stats, raw
