"""Return and advantage estimators over a rollout of shape (T, n_envs).

Conventions (the same for every function):
    rewards[t]      r_{t+1}, the reward after taking a_t in s_t
    values[t]       v(s_t) for t = 0..T (T + 1 rows: the last row is v of the state after the rollout)
    terminated[t]   s_{t+1} is terminal: no bootstrapping from it
    dones[t]        the episode ended at t (terminated or truncated): nothing flows back across it.
                    A truncated episode still bootstraps from v(s_{t+1}), its final observation.

References: Sutton & Barto (2018) ch. 7 (n-step returns) and 12 (lambda-returns); Schulman et al.
(2016) "High-Dimensional Continuous Control Using Generalized Advantage Estimation".
"""

from __future__ import annotations

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
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")


def gae(rewards: torch.Tensor, values: torch.Tensor, terminated: torch.Tensor, dones: torch.Tensor,
        gamma: float, lam: float) -> torch.Tensor:
    """Generalised advantage estimates A_t = sum_k (gamma lambda)^k delta_{t+k}, cut at episode ends.

    delta_t = r_{t+1} + gamma (1 - terminated_t) v(s_{t+1}) - v(s_t);
    A_t = delta_t + gamma lambda (1 - done_t) A_{t+1}. lambda = 1 gives the Monte Carlo / n-step-to-the-
    end-of-rollout advantage, lambda = 0 the one-step TD error.
    """
    _check(rewards, values, terminated, dones, gamma)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    not_terminal = 1.0 - terminated.float()
    flow = gamma * lam * (1.0 - dones.float())
    delta = rewards + gamma * not_terminal * values[1:] - values[:-1]
    advantages = torch.zeros_like(rewards)
    a = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        a = delta[t] + flow[t] * a
        advantages[t] = a
    return advantages


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
    returns = torch.empty_like(rewards)
    for t in range(t_len):
        end = min(t + n, t_len) - 1
        g = torch.zeros_like(rewards[0])
        discount = torch.ones_like(g)  # gamma^(k-t) while the episode runs, 0 once it has ended
        for k in range(t, end + 1):
            stop = torch.ones_like(g) if k == end else dones[k].float()
            g = g + discount * (rewards[k] + stop * gamma * not_terminal[k] * values[k + 1])
            discount = discount * gamma * not_done[k]
        returns[t] = g
    return returns


def discounted_returns(rewards: torch.Tensor, dones: torch.Tensor, gamma: float) -> torch.Tensor:
    """Monte Carlo returns g_t = r_{t+1} + gamma g_{t+1} within each episode (computed backwards)."""
    if rewards.shape != dones.shape or rewards.dim() != 2:
        raise ValueError(f"rewards and dones must both have shape (T, n_envs), got {tuple(rewards.shape)} "
                         f"and {tuple(dones.shape)}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    returns = torch.zeros_like(rewards)
    g = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        g = rewards[t] + gamma * (1.0 - dones[t].float()) * g
        returns[t] = g
    return returns
