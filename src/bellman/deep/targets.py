"""Target networks and one-step TD targets, shared by the value-based and actor-critic agents.

polyak_update: w- <- tau w + (1 - tau) w-, the slowly tracking target network of DDPG (Lillicrap et al.
2016, arXiv:1509.02971, sec. 3); tau = 1 is DQN's periodic copy (Mnih et al. 2015).
td_target: r + gamma (1 - terminated) x(s'), the bootstrapped one-step target (Sutton & Barto 2018, sec.
6.1), x(s') the value of the next state under whichever estimate the algorithm uses.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """w- <- tau w + (1 - tau) w- for every parameter (tau = 1: a copy)."""
    for p_target, p in zip(target.parameters(), source.parameters()):
        p_target.lerp_(p, tau)


def td_target(reward: torch.Tensor, terminated: torch.Tensor, next_value: torch.Tensor, gamma: float) -> torch.Tensor:
    """r + gamma (1 - terminated) next_value: no bootstrap from a terminal state (terminated as 0/1 floats)."""
    return reward + gamma * (1.0 - terminated) * next_value
