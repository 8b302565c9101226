"""Speculative sampling: k drafted tokens verified by one forward pass of the policy, with samples distributed
exactly as the policy's own.

The rule (Leviathan et al. 2023, "Fast Inference from Transformers via Speculative Decoding",
arXiv:2211.17192, Algorithm 1; Chen et al. 2023, "Accelerating Large Language Model Decoding with
Speculative Sampling", arXiv:2302.01318, Algorithm 2). Drafts d_1..d_k are drawn from draft distributions
q_1..q_k; the policy's distributions p_1..p_{k+1} after each prefix come from one pass. Draft d_i is accepted
with probability min(1, p_i(d_i) / q_i(d_i)), in order; at the first rejection the token is drawn from the
normalised residual max(0, p_i - q_i) and the rest discarded; when all k pass, a bonus token is drawn from
p_{k+1}. Each emitted token then has, given the ones before it, exactly the distribution p (Leviathan et al.,
Appendix A.1), so the samples are the policy's, as on-policy RL needs.

Temperature, top-k and top-p are applied alike to the target and draft logits (``probs``): the rule is exact
for the filtered target distribution, the one plain sampling (``rollout.sample``) draws from. At
temperature 0 both are one-hot at their argmax: a draft passes iff it is the policy's argmax and the
residual is the policy's argmax, so the output is greedy decoding's, token for token.

Usage::

    from bellman.llm.speculative import speculative_step
    tokens, n, logp = speculative_step(target_logits, draft_logits, drafts, sampling, generator)
    # tokens (B, k + 1): n[b] accepted drafts then the residual / bonus token at n[b]; logp their log-probs
"""

from __future__ import annotations

import torch

from bellman.llm.config import SamplingConfig
from bellman.llm.logprobs import token_logprobs
from bellman.llm.rollout import _filter, draw


def probs(logits: torch.Tensor, s: SamplingConfig) -> torch.Tensor:
    """The distribution plain sampling draws from: softmax(logits / T) after top-k / top-p filtering, or
    one-hot at the argmax at temperature 0. logits (..., V) -> float32 (..., V)."""
    logits = logits.float()
    if s.temperature == 0:
        return torch.zeros_like(logits).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
    shape = logits.shape
    flat = logits.reshape(-1, shape[-1]) / s.temperature
    return _filter(flat, s.top_k, s.top_p).softmax(-1).reshape(shape)


def accept(p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor, generator: torch.Generator | None = None,
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The speculative-sampling rule on distributions: p (B, k + 1, V) the target's after each prefix, q
    (B, k, V) the drafts', drafts (B, k) drawn from q. Returns tokens (B, k + 1) (the accepted drafts, then
    at position n the residual or bonus token; after n the drafts, to be discarded) and n (B,), the drafts
    accepted.

    Draft i passes when u_i q_i(d_i) < p_i(d_i), u_i ~ U[0, 1): probability min(1, p_i(d_i) / q_i(d_i)). The
    residual max(0, p_n - q_n) is normalised by ``draw``; where it is all zero (p_n = q_n, a rejection of
    probability 0 reached only through float rounding) p_n is drawn instead. At n = k, q_{k+1} is taken as 0,
    so the "residual" is p_{k+1}: the bonus token."""
    (b, k1, v), k = p.shape, drafts.shape[1]
    if q.shape != (b, k, v) or drafts.shape != (b, k) or k1 != k + 1:
        raise ValueError(f"p must be (B, k + 1, V), q (B, k, V) and drafts (B, k); got {tuple(p.shape)}, "
                         f"{tuple(q.shape)} and {tuple(drafts.shape)}")
    p_d = p[:, :k].gather(-1, drafts[..., None]).squeeze(-1)
    q_d = q.gather(-1, drafts[..., None]).squeeze(-1)
    u = torch.rand(b, k, generator=generator, device=p.device)
    passed = u * q_d < p_d
    n = passed.long().cumprod(1).sum(1)  # leading accepts
    rows = torch.arange(b, device=p.device)
    q_n = torch.cat([q, q.new_zeros(b, 1, v)], 1)[rows, n]
    residual = (p[rows, n] - q_n).clamp_(min=0)
    empty = residual.sum(-1, keepdim=True) <= 0
    residual = torch.where(empty, p[rows, n], residual)
    tokens = torch.cat([drafts, drafts.new_zeros(b, 1)], 1)
    tokens[rows, n] = draw(residual, generator)
    return tokens, n


def speculative_step(target_logits: torch.Tensor, draft_logits: torch.Tensor, drafts: torch.Tensor,
                     s: SamplingConfig, generator: torch.Generator | None = None,
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``accept`` on logits: target_logits (B, k + 1, V) of the policy's verifying pass, draft_logits
    (B, k, V) the drafts were drawn from (under ``probs(., s)``), drafts (B, k). Returns tokens (B, k + 1),
    n (B,) and the policy's log-probs (B, k + 1) of the tokens under softmax(logits / T) before top-k / top-p
    filtering (as ``Rollout.logprobs``; T = 1 at temperature 0)."""
    tokens, n = accept(probs(target_logits, s), probs(draft_logits, s), drafts, generator)
    return tokens, n, token_logprobs(target_logits, tokens, s.temperature or 1.0)
