"""Direct Preference Optimisation: sigmoid (DPO), ipo and hinge losses on preference pairs.

With h = (logp_w - ref_w) - (logp_l - ref_l) the log-ratio margin of the chosen (w) over the rejected (l)
completion, summed over completion tokens only:

    sigmoid  -log sigmoid(beta h)            Rafailov et al. 2023, "Direct Preference Optimization", eq. 7
    ipo      (h - 1 / (2 beta))^2            Azar et al. 2023, "A General Theoretical Paradigm ...", eq. 17
    hinge    max(0, 1 - beta h)              Zhao et al. 2023, "SLiC-HF", the calibration loss

The implicit rewards are beta (logp - ref) for each side; their margin and the preference accuracy
(chosen reward > rejected reward) are logged. Pairs come from preference data or, with
`sample_preference_pairs`, from the policy's own samples split by the task reward into correct (chosen)
and wrong (rejected) completions.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

LOSS_TYPES = ("sigmoid", "ipo", "hinge")


def dpo_loss(logp_chosen: torch.Tensor, logp_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1, loss_type: str = "sigmoid",
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair DPO losses and the implicit rewards beta (logp - ref) of the chosen and rejected sides.

    All four inputs are sequence log-probs of shape (B,): the sum of per-token log-probs over the
    completion tokens under the policy (logp_*) and the frozen reference (ref_*).
    Returns (losses (B,), chosen_rewards (B,), rejected_rewards (B,)); the rewards are detached.
    """
    tensors = (logp_chosen, logp_rejected, ref_chosen, ref_rejected)
    if not all(isinstance(t, torch.Tensor) for t in tensors):
        raise TypeError("dpo_loss takes four torch.Tensor sequence log-probs")
    if len({t.shape for t in tensors}) != 1 or logp_chosen.dim() != 1:
        raise ValueError(f"dpo_loss needs four (B,) tensors of one shape, got {[tuple(t.shape) for t in tensors]}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    h = (logp_chosen - ref_chosen) - (logp_rejected - ref_rejected)
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * h)
    elif loss_type == "ipo":
        losses = (h - 1.0 / (2.0 * beta)) ** 2
    else:
        losses = torch.relu(1.0 - beta * h)
    chosen_rewards = beta * (logp_chosen - ref_chosen).detach()
    rejected_rewards = beta * (logp_rejected - ref_rejected).detach()
    return losses, chosen_rewards, rejected_rewards


def build_preference_pairs(prompts: list[str], completions: list[str], rewards: list[float],
                           max_pairs_per_prompt: int = 4) -> list[dict[str, str]]:
    """Pair sampled completions of the same prompt: best-rewarded ones (chosen) against lower-rewarded ones.

    For every prompt whose samples do not all share one reward, the distinct completions with the highest
    reward are paired with the distinct completions of lower reward (lowest first), spreading the pairs
    over both sides before repeating one, up to max_pairs_per_prompt.
    Returns dicts with the TRL preference columns "prompt", "chosen", "rejected"; order follows the input.
    """
    if not (len(prompts) == len(completions) == len(rewards)):
        raise ValueError(f"prompts, completions and rewards must have one length, got "
                         f"{len(prompts)}, {len(completions)}, {len(rewards)}")
    if max_pairs_per_prompt < 1:
        raise ValueError(f"max_pairs_per_prompt must be >= 1, got {max_pairs_per_prompt}")
    groups: dict[str, list[tuple[str, float]]] = {}
    for prompt, completion, reward in zip(prompts, completions, rewards):
        if reward != reward:
            raise ValueError(f"reward is NaN for prompt {prompt!r}")
        groups.setdefault(prompt, []).append((completion, float(reward)))
    pairs = []
    for prompt, samples in groups.items():
        best = max(r for _, r in samples)
        chosen = list(dict.fromkeys(c for c, r in samples if r == best))
        lower = sorted({(r, c) for c, r in samples if r < best})
        rejected = list(dict.fromkeys(c for _, c in lower))
        ij = sorted(itertools.product(range(len(chosen)), range(len(rejected))), key=lambda ij: (max(ij), ij))
        pairs.extend({"prompt": prompt, "chosen": chosen[i], "rejected": rejected[j]}
                     for i, j in ij[:max_pairs_per_prompt])
    return pairs
