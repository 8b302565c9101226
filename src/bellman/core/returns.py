"""Returns and advantages, shared by the tabular, deep RL and LLM methods.

Time-major conventions (a rollout of shape (T, n_envs); the same for every function):
    rewards[t]      r_{t+1}, the reward after taking a_t in s_t
    values[t]       v(s_t) for t = 0..T (T + 1 rows: the last row is v of the state after the rollout)
    terminated[t]   s_{t+1} is terminal: no bootstrapping from it
    dones[t]        the episode ended at t (terminated or truncated): nothing flows back across it.
                    A truncated episode still bootstraps from v(s_{t+1}), its final observation.

Token sequences (B, T) right-padded by a mask (LLM completions) go through `token_gae`, which is `gae`
with each sequence ending after its last token. `discounted_returns` works on numpy arrays, so the
tabular methods run without torch; the other functions take torch tensors and call only their methods,
so importing this module does not load torch.

References: Sutton & Barto (2018) sec. 3.3 (returns), ch. 7 (n-step returns) and 12 (lambda-returns);
Schulman et al. (2016) "High-Dimensional Continuous Control Using Generalized Advantage Estimation",
arXiv:1506.02438.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # only for the annotations: the functions use tensor methods
    import torch


def _check(rewards: torch.Tensor, values: torch.Tensor, terminated: torch.Tensor, dones: torch.Tensor,
           gamma: float) -> None:
    if rewards.dim() != 2:
        raise ValueError(f"rewards must have shape (T, n_envs), got {tuple(rewards.shape)}")
    t, n = rewards.shape
    if tuple(values.shape) != (t + 1, n):
        raise ValueError(f"values must have shape (T + 1, n_envs) = {(t + 1, n)}, got {tuple(values.shape)}")
    for name, x in (("terminated", terminated), ("dones", dones)):
        if tuple(x.shape) != (t, n):
            raise ValueError(f"{name} must have shape (T, n_envs) = {(t, n)}, got {tuple(x.shape)}")
    _check_unit("gamma", gamma)


def _check_unit(name: str, x: float) -> None:
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {x}")


def check_masked(name: str, x: torch.Tensor, mask: torch.Tensor) -> None:
    """x must be a (B, T) tensor of the mask's shape (token sequences: one row per sequence)."""
    if not hasattr(x, "dim") or not hasattr(x, "new_zeros"):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.shape != mask.shape or x.dim() != 2:
        raise ValueError(f"{name} must have the (B, T) shape of the mask {tuple(mask.shape)}, got {tuple(x.shape)}")


def gae(rewards: torch.Tensor, values: torch.Tensor, terminated: torch.Tensor, dones: torch.Tensor,
        gamma: float, lam: float) -> torch.Tensor:
    """Generalised advantage estimates A_t = sum_k (gamma lambda)^k delta_{t+k}, cut at episode ends
    (Schulman et al. 2016, eq. 16).

    delta_t = r_{t+1} + gamma (1 - terminated_t) v(s_{t+1}) - v(s_t);
    A_t = delta_t + gamma lambda (1 - done_t) A_{t+1}. lambda = 1 gives the Monte Carlo / n-step-to-the-
    end-of-rollout advantage, lambda = 0 the one-step TD error.
    """
    _check(rewards, values, terminated, dones, gamma)
    _check_unit("lam", lam)
    not_terminal = 1.0 - terminated.float()
    flow = gamma * lam * (1.0 - dones.float())
    delta = rewards + gamma * not_terminal * values[1:] - values[:-1]
    advantages = rewards.new_zeros(rewards.shape)
    a = rewards.new_zeros(rewards.shape[1:])
    for t in range(rewards.shape[0] - 1, -1, -1):
        a = delta[t] + flow[t] * a
        advantages[t] = a
    return advantages


def token_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
              lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over the tokens of sequences (B, T) where mask is 1: `gae` in time-major layout with every
    sequence terminated after its last token, so V and A past it count as 0.

    delta_t = r_t + gamma V(t+1) - V(t), A_t = delta_t + gamma lam A_{t+1}. Returns (advantages,
    returns = A + V), both zero off the mask. Defaults: TRL's PPO (gamma 1, lam 0.95).
    """
    check_masked("rewards", rewards, mask)
    check_masked("values", values, mask)
    mask = mask.to(values.dtype)
    b, t = values.shape
    next_in_mask = values.new_zeros((t, b))  # mask[:, t + 1], time-major; 0 after the last position
    next_in_mask[:-1] = mask[:, 1:].T
    ends = next_in_mask == 0                 # s_{t+1} is past the sequence: terminal
    v = values.new_zeros((t + 1, b))         # V(t) for t = 0..T, V(T) = 0
    v[:-1] = values.T
    advantages = gae(rewards.T, v, ends, ends, gamma, lam).T.contiguous() * mask  # row-major, as the inputs
    return advantages, (advantages + values) * mask


def n_step_returns(rewards: torch.Tensor, values: torch.Tensor, terminated: torch.Tensor, dones: torch.Tensor,
                   gamma: float, n: int) -> torch.Tensor:
    """n-step returns G_t^(n) = r_{t+1} + ... + gamma^{m-1} r_{t+m} + gamma^m v(s_{t+m}), m = min(n, ...).

    The window stops early at the end of an episode (no bootstrap after a termination, bootstrap from
    the final observation after a truncation) and at the end of the rollout (bootstrap from values[T]).
    """
    _check(rewards, values, terminated, dones, gamma)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    t_len = rewards.shape[0]
    not_terminal = 1.0 - terminated.float()
    not_done = 1.0 - dones.float()
    returns = rewards.new_empty(rewards.shape)
    for t in range(t_len):
        end = min(t + n, t_len) - 1
        g = rewards.new_zeros(rewards.shape[1:])
        discount = g.new_ones(g.shape)  # gamma^(k-t) while the episode runs, 0 once it has ended
        for k in range(t, end + 1):
            stop = g.new_ones(g.shape) if k == end else dones[k].float()
            g = g + discount * (rewards[k] + stop * gamma * not_terminal[k] * values[k + 1])
            discount = discount * gamma * not_done[k]
        returns[t] = g
    return returns


def discounted_returns(rewards: Any, gamma: float, dones: Any = None) -> np.ndarray:
    """Monte Carlo returns g_t = r_{t+1} + gamma g_{t+1}, computed backwards along the first axis and
    restarted after every step where `dones` is True (Sutton & Barto 2018, eq. 3.9).

    rewards: one episode's rewards (T,) or a rollout (T, n_envs), a list or a numpy array (a float32
    array stays float32); dones: None (one episode) or booleans of the same shape.
    """
    r = np.asarray(rewards)
    if not np.issubdtype(r.dtype, np.floating):
        r = r.astype(np.float64)
    if r.ndim == 0 or len(r) == 0:
        raise ValueError(f"rewards must have shape (T, ...) with T >= 1, got {r.shape}")
    _check_unit("gamma", gamma)
    if dones is None:
        flow = np.full(len(r), gamma, dtype=r.dtype)
    else:
        dones = np.asarray(dones)
        if dones.shape != r.shape:
            raise ValueError(f"dones must have the shape of rewards {r.shape}, got {dones.shape}")
        flow = gamma * (1.0 - dones.astype(r.dtype))
    returns = np.empty_like(r)
    g = np.zeros_like(r[0])
    for t in range(len(r) - 1, -1, -1):
        g = r[t] + flow[t] * g
        returns[t] = g
    return returns


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over the positions where mask is 1."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def standardize(x: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """Zero mean, unit standard deviation (advantage normalisation, Huang et al. 2022, "The 37
    Implementation Details of PPO", detail 7).

    Without a mask: (x - mean) / (std + eps) over all of x with the sample (n - 1) std, as in
    Stable-Baselines3; fewer than two values have no sample std and are returned as they are.
    With a mask (padded sequences): (x - mean) / sqrt(var + eps) over the positions where mask is 1 with
    the population variance, as TRL's `masked_whiten`, and zero elsewhere.
    """
    if mask is None:
        return x if x.numel() < 2 else (x - x.mean()) / (x.std() + eps)
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * (var + eps).rsqrt() * mask
