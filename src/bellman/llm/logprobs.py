"""Per-token log-probs of completions under a causal LM, through the model's own (Hugging Face) forward.

    log pi(c_t | prompt, c_<t) = log_softmax(z_t / T)[c_t],   z_t the logits that predict c_t

Usage::

    from bellman.llm.logprobs import completion_logprobs
    logp = completion_logprobs(model, p_ids, p_mask, c_ids, c_mask)   # (B, C), zero off the completion

This is the plain path every model supports: one forward pass over each row's prompt + completion.
Faster ways to the same numbers (a prompt run once for its group of completions, a hand-written
forward) are the engines' (``bellman.llm.engine``).
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from bellman.llm.batching import completion_outputs, position_ids


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / temperature) at ``tokens``: logits (..., V) in float32, tokens (...) -> (...)."""
    return torch.log_softmax(logits.float() / temperature, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def completion_logprobs(model: PreTrainedModel, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                        completion_ids: torch.Tensor, completion_mask: torch.Tensor, temperature: float = 1.0,
                        ) -> torch.Tensor:
    """log pi(c_t | prompt, c_<t) / temperature-scaled, for every completion token: (B, C), 0 where masked.

    Position ids follow the attention mask, so left padding does not change the numbers.
    """
    if prompt_ids.shape != prompt_mask.shape or completion_ids.shape != completion_mask.shape:
        raise ValueError("ids and masks must have the same shape")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    ids = torch.cat([prompt_ids, completion_ids], dim=1)
    mask = torch.cat([prompt_mask, completion_mask], dim=1)
    c = completion_ids.shape[1]
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask), use_cache=False,
                   logits_to_keep=c + 1).logits
    return token_logprobs(completion_outputs(logits, c), completion_ids, temperature) * completion_mask
