"""PPO for RLHF with the PPO-max stabilisers: a policy, a critic, a frozen reference and a reward model.

One iteration (Ouyang et al. 2022, "Training language models to follow instructions with human
feedback", sec. 3.5; Zheng et al. 2023, "Secrets of RLHF in Large Language Models Part I: PPO", sec. 5):

    sample completions y ~ pi(.|x); score s = r_phi(x, y) with the reward model
    s <- clip((s - mean) / std, -reward_clip, reward_clip)           running moments (reward normalisation)
    r_t = -kl_coef (log pi(y_t) - log pi_ref(y_t))  (+ s at the last completion token)
    delta_t = r_t + gamma V(t+1) - V(t);  A_t = delta_t + gamma lam A_{t+1};  R_t = A_t + V(t)   (GAE)
    A <- (A - mean A) / std A                                           (advantage normalisation)
    for ppo_epochs, minibatches:
        L_pi = mean max(-A ratio, -A clip(ratio, 1 - eps, 1 + eps))     ratio = pi / pi_old
        L_V  = 1/2 mean max((V - R)^2, (V_old + clip(V - V_old, -eps_v, eps_v) - R)^2)   (value clipping)
        L    = L_pi + vf_coef L_V (+ ptx_coef L_pretrain)               then global grad-norm clipping

Only completion tokens carry rewards, values, advantages and loss. The critic is initialised from the
reward model, as in InstructGPT.
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over the positions where mask is 1."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked positions (population std); zero outside the mask."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def _check_bt(name: str, x: torch.Tensor, mask: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.shape != mask.shape or x.dim() != 2:
        raise ValueError(f"{name} must have the (B, T) shape of the completion mask {tuple(mask.shape)}, "
                         f"got {tuple(x.shape)}")


def kl_penalised_rewards(scores: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor,
                         mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-token rewards r_t = -kl_coef (logp_t - ref_logp_t), plus the sequence score at its last token.

    scores (B,), logp / ref_logp / mask (B, T) over completion positions; every row needs a completion token.
    """
    for name, x in (("logp", logp), ("ref_logp", ref_logp)):
        _check_bt(name, x, mask)
    if scores.shape != mask.shape[:1]:
        raise ValueError(f"scores must have shape ({mask.shape[0]},), got {tuple(scores.shape)}")
    if kl_coef < 0:
        raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
    if (mask.sum(1) == 0).any():
        raise ValueError("every sequence needs at least one completion token in mask")
    rewards = -kl_coef * (logp - ref_logp) * mask
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = (positions * mask.long()).argmax(1)
    rewards[torch.arange(mask.shape[0]), last] += scores
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over completion tokens (Schulman et al. 2016, eq. 16).

    delta_t = r_t + gamma V(t+1) - V(t), A_t = delta_t + gamma lam A_{t+1}, where V and A past the last
    completion token are 0 (the sequence ends). Returns (advantages, returns = A + V), both zero off-mask.
    """
    _check_bt("rewards", rewards, mask)
    _check_bt("values", values, mask)
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma and lam must lie in [0, 1], got gamma={gamma}, lam={lam}")
    mask = mask.to(values.dtype)
    advantages = torch.zeros_like(values)
    a_next = torch.zeros_like(values[:, 0])
    v_next = torch.zeros_like(values[:, 0])
    m_next = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * v_next * m_next - values[:, t]
        a_next = (delta + gamma * lam * a_next * m_next) * mask[:, t]
        advantages[:, t] = a_next
        v_next, m_next = values[:, t], mask[:, t]
    returns = (advantages + values) * mask
    return advantages, returns


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip_range: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped surrogate mean max(-A ratio, -A clip(ratio, 1-eps, 1+eps)); returns (loss, clip fraction)."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).to(logp.dtype), mask)


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip_range: float | None = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """1/2 mean max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2); None turns clipping off.

    Returns (loss, fraction of tokens where the clipped term was the larger).
    """
    _check_bt("values", values, mask)
    unclipped = (values - returns) ** 2
    if clip_range is None:
        return 0.5 * masked_mean(unclipped, mask), torch.zeros((), dtype=values.dtype)
    v_clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    clipped = (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).to(values.dtype), mask)


class RunningMoments:
    """Running mean and std of all rewards seen so far (Chan et al. parallel update), for normalisation."""

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 0

    def update(self, x: torch.Tensor) -> None:
        """Fold a batch of values into the running mean and (population) variance."""
        if x.numel() == 0:
            raise ValueError("RunningMoments.update needs a non-empty batch")
        x = x.detach().double()
        n, batch_mean = x.numel(), x.mean().item()
        batch_var = x.var(unbiased=False).item()
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta ** 2 * self.count * n / total
        self.mean, self.var, self.count = self.mean + delta * n / total, m2 / total, total

    @property
    def std(self) -> float:
        return self.var ** 0.5

    def normalise(self, x: torch.Tensor, clip: float | None, eps: float = 1e-8) -> torch.Tensor:
        """clip((x - mean) / std, -clip, clip) with the current moments (no clipping when clip is None)."""
        z = (x - self.mean) / (self.std + eps)
        return z if clip is None else z.clamp(-clip, clip)

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.var, self.count = float(state["mean"]), float(state["var"]), int(state["count"])
