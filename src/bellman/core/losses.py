"""The PPO losses, shared by deep RL PPO and PPO for RLHF (Schulman et al. 2017, "Proximal Policy
Optimization Algorithms", arXiv:1707.06347; value clipping: Huang et al. 2022, "The 37 Implementation
Details of PPO", detail 9).

Each is a mean over all of its inputs, or with `mask` over the positions where mask is 1 (the tokens of
padded sequences), and returns (loss, fraction of positions where the clipped term was the larger).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bellman.core.returns import check_masked, masked_mean

if TYPE_CHECKING:  # only for the annotations: the functions use tensor methods
    import torch


def _mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x.mean() if mask is None else masked_mean(x, mask)


def clipped_surrogate_loss(ratio: torch.Tensor, advantages: torch.Tensor, clip_eps: float,
                           mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """-E[min(ratio A, clip(ratio, 1 - eps, 1 + eps) A)], the PPO-Clip objective (eq. 7) negated for
    descent, written as E[max(-A ratio, -A clip(ratio, 1 - eps, 1 + eps))]; ratio = pi(a|s) / pi_old(a|s)."""
    if mask is not None:
        check_masked("ratio", ratio, mask)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)
    return _mean(unclipped.maximum(clipped), mask), _mean((clipped > unclipped).to(ratio.dtype), mask)


def value_loss(v: torch.Tensor, v_old: torch.Tensor, returns: torch.Tensor, clip: float | None = None,
               mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """E[(v - G)^2], or with clipping E[max((v - G)^2, (v_old + clip(v - v_old, -c, c) - G)^2)].

    No factor 1/2: a caller that wants the loss whose gradient is (v - G) grad v halves it.
    """
    if mask is not None:
        check_masked("v", v, mask)
    unclipped = (v - returns).pow(2)
    if clip is None:
        return _mean(unclipped, mask), v.new_zeros(())
    v_clipped = v_old + (v - v_old).clamp(-clip, clip)
    clipped = (v_clipped - returns).pow(2)
    return _mean(unclipped.maximum(clipped), mask), _mean((clipped > unclipped).to(v.dtype), mask)
