"""Per-token log-probs of completions under a causal LM, through the model's own (Hugging Face) forward.

    log pi(c_t | prompt, c_<t) = log_softmax(z_t / T)[c_t],   z_t the logits that predict c_t

Usage::

    from bellman.llm.logprobs import completion_logprobs
    logp = completion_logprobs(model, p_ids, p_mask, c_ids, c_mask)   # (B, C), zero off the completion

This is the plain path every model supports: one forward pass over each row's prompt + completion.
Faster ways to the same numbers (a prompt run once for its group of completions, a hand-written
forward) are the engines' (``bellman.llm.engine``).

At a real vocabulary (V = 49,152 for SmolLM2, 151,936 for Qwen2.5) the logits of every completion token,
(B, C, V) in float32, outgrow the model: 64 x 256 tokens x 152k is 10 GB, and the log-softmax and its
autograd record as much again. ``head_logprobs`` computes the same numbers from the final hidden states
(B, C, d) a chunk of positions at a time, each chunk's logits recomputed in the backward pass instead of
kept (activation checkpointing: Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost",
arXiv:1604.06174), so a pass holds at most ``LOGITS_BUDGET`` logits at once; where everything fits in that
budget it runs exactly as one dense pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel

from bellman.llm.batching import position_ids

LOGITS_BUDGET = 2**24  # float32 logits a log-prob pass holds at once (64 MiB)
PLAIN_HEAD = ("LlamaForCausalLM", "Qwen2ForCausalLM")  # logits = lm_head(decoder(...).last_hidden_state)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / temperature) at ``tokens``: logits (..., V) in float32, tokens (...) -> (...).

    Computed as z_t - logsumexp(z), z = logits / temperature (no division at temperature 1), with the
    gradient onehot(t) - softmax(z) written in one pass (``_TokenLogProb``) rather than through a (..., V)
    log-softmax, its saved output and a scattered one-hot: the same numbers at a third of the memory traffic.
    torch's float32 ``log_softmax`` on the CPU is also less exact at a real vocabulary (against float64,
    errors up to 8e-6 with a mean bias of 1e-6 at V = 49,152, where ``logsumexp`` stays within 2e-6, mean
    2e-8)."""
    z = logits.float()
    if temperature != 1:
        z = z / temperature
    if torch.is_grad_enabled() and z.requires_grad:
        return _TokenLogProb.apply(z, tokens)
    return _token_logprobs(z, tokens)[0]


def _token_logprobs(z: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lse = torch.logsumexp(z, -1)
    return z.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - lse, lse


class _TokenLogProb(torch.autograd.Function):
    """z_t - logsumexp(z) and its gradient g (onehot(t) - softmax(z)), softmax recomputed from the saved z and
    logsumexp."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        out, lse = _token_logprobs(z, tokens)
        ctx.save_for_backward(z, tokens, lse)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        z, tokens, lse = ctx.saved_tensors
        grad = torch.sub(z, lse.unsqueeze(-1)).exp_().mul_(-g.unsqueeze(-1))
        return grad.scatter_add_(-1, tokens.unsqueeze(-1), g.unsqueeze(-1)), None


def plain_head(model: PreTrainedModel) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """(decoder, lm_head) of a causal LM whose logits are exactly ``lm_head(decoder(...).last_hidden_state)``
    (Llama, Qwen2; also inside a peft wrapper, adapters included), else None: other models post-process
    their logits (soft-capping, scaling) and are scored from the logits their own forward returns."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if type(base).__name__ not in PLAIN_HEAD:
        return None
    return base.get_decoder(), base.get_output_embeddings()


def _chunk_logprobs(hidden: torch.Tensor, head: torch.nn.Module | None, tokens: torch.Tensor,
                    temperature: float) -> torch.Tensor:
    logits = hidden if head is None else F.linear(hidden, head.weight, head.bias)
    return token_logprobs(logits, tokens, temperature)


def head_logprobs(blocks: list[torch.Tensor], head: torch.nn.Module | None, rows: torch.Tensor,
                  tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(z_r / T)[token] for each pair (r, token) of ``rows`` and ``tokens`` (N,): z_r the logits
    ``head(h_r)`` of row r of the hidden states ``blocks`` (each (M_k, d), rows numbered across them), or
    the rows themselves when ``head`` is None (logits already). -> (N,), float32.

    If all M rows' logits fit in ``LOGITS_BUDGET`` they are computed as one dense pass per block; otherwise
    the N rows read are taken a chunk at a time and, under autograd, each chunk's logits are recomputed in
    the backward pass instead of kept (the same numbers up to float rounding of the smaller products)."""
    vocab = head.weight.shape[0] if head is not None else blocks[0].shape[-1]
    if sum(b.shape[0] for b in blocks) * vocab <= LOGITS_BUDGET:
        logits = torch.cat([b if head is None else F.linear(b, head.weight, head.bias) for b in blocks])
        return token_logprobs(logits[rows], tokens, temperature)
    hidden = torch.cat(blocks) if len(blocks) > 1 else blocks[0]
    step, out = max(1, LOGITS_BUDGET // vocab), []
    for i in range(0, rows.shape[0], step):
        h, t = hidden[rows[i:i + step]], tokens[i:i + step]
        if torch.is_grad_enabled() and h.requires_grad:
            out.append(checkpoint(_chunk_logprobs, h, head, t, temperature, use_reentrant=False))
        else:
            out.append(_chunk_logprobs(h, head, t, temperature))
    return torch.cat(out) if out else hidden.new_zeros(0, dtype=torch.float32)


def scatter_logprobs(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N,) log-probs of the N positions where ``mask`` (B, C) is 1, as (B, C) with 0 elsewhere."""
    out = values.new_zeros(mask.shape)
    return out.masked_scatter(mask.bool(), values)


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
    (b, c), parts = completion_ids.shape, plain_head(model)
    kwargs = dict(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask), use_cache=False)
    if parts is None:
        out, head = model(**kwargs, logits_to_keep=c + 1).logits, None
    else:
        decoder, head = parts
        out = decoder(**kwargs).last_hidden_state[:, -c - 1:]
    # the outputs that predict completion token j sit at j of (B, C + 1); the last predicts past the end
    at = (torch.arange(b, device=ids.device)[:, None] * (c + 1) + torch.arange(c, device=ids.device))
    m = completion_mask.bool()
    values = head_logprobs([out.reshape(b * (c + 1), -1)], head, at[m], completion_ids[m], temperature)
    return scatter_logprobs(values, completion_mask)
