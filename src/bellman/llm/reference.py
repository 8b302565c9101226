"""The frozen reference policy pi_ref of KL-regularised training (DPO, GRPO, PPO-RLHF).

The reference is the starting policy, kept fixed: a frozen copy of the model, the model given by the
caller, or, for a peft LoRA policy, the model itself with its adapters switched off (its base model).
Its log-probs enter the DPO loss (Rafailov et al. 2023, arXiv:2305.18290, eq. 7), GRPO's KL term (Shao et
al. 2024, "DeepSeekMath", arXiv:2402.03300, eqs. 3-4) and PPO's per-token KL penalty (Ouyang et al. 2022,
arXiv:2203.02155, eq. 2). No gradient flows through them.
"""

from __future__ import annotations

import copy

import torch
from transformers import PreTrainedModel

from bellman.llm.engine import Engine, get_engine


def frozen_reference(policy: Engine, ref_model: PreTrainedModel | None) -> Engine | None:
    """The reference to keep, as an engine: over ``ref_model`` if given, None for a peft LoRA policy (its
    base model, adapters off), else over a frozen copy of the policy's model."""
    if ref_model is not None:
        return get_engine(ref_model.eval().requires_grad_(False), policy.tok)
    if hasattr(policy.model, "disable_adapter"):
        return None
    return get_engine(copy.deepcopy(policy.model).eval().requires_grad_(False), policy.tok)


def reference_logprobs(policy: Engine, reference: Engine | None, *batch: torch.Tensor, temperature: float = 1.0,
                       shared_prompt: bool = False) -> torch.Tensor:
    """Completion log-probs (``Engine.logprobs`` of ``batch``) under the frozen reference: ``reference``, or,
    when it is None, the policy with its peft LoRA adapters switched off. No gradient."""
    if reference is not None:
        return reference.logprobs(*batch, temperature=temperature, shared_prompt=shared_prompt, grad=False)
    with torch.inference_mode(), policy.model.disable_adapter():
        return policy.logprobs(*batch, temperature=temperature, shared_prompt=shared_prompt, grad=False)
