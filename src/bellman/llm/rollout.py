"""Sampled completions: the rollout that sampling settings (``SamplingConfig``, in ``bellman.llm.config``)
give, and the decoding loop engines share.

Usage::

    from bellman.llm.engine import get_engine
    from bellman.llm.rollout import SamplingConfig
    engine = get_engine(model, tok)
    ro = engine.generate(["1+2=", "10+20="], SamplingConfig(temperature=1.0, max_new_tokens=16), seed=0)
    ro.completion_ids, ro.completion_mask, ro.logprobs     # (B, C) each, right padded
    ro.completions(tok)                                    # decoded text, cut at EOS
    engine.generate(prompts, SamplingConfig(temperature=0.0))   # greedy

``logprobs`` are log pi(token) under the temperature-scaled distribution before top-k / top-p
filtering (the numbers ``Engine.logprobs(..., temperature=T)`` computes), so they serve as the "old"
policy log-probs of PPO/GRPO. The completion mask is 1 up to and including the first EOS. Sampling is
top-k, then nucleus (top-p) filtering (Holtzman et al. 2020, "The Curious Case of Neural Text
Degeneration", arXiv:1904.09751).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from transformers import PreTrainedTokenizerBase

from bellman.llm.config import SamplingConfig
from bellman.llm.logprobs import token_logprobs


@dataclass
class Rollout:
    """A batch of sampled completions; prompts left padded, completions right padded."""

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    logprobs: torch.Tensor
    truncated: torch.Tensor  # (B,) bool: hit max_new_tokens without EOS

    def completions(self, tok: PreTrainedTokenizerBase) -> list[str]:
        """Decoded completion text of every row, EOS and padding removed."""
        lengths = self.completion_mask.sum(1).tolist()  # the mask is a prefix of each row
        return tok.batch_decode([ids[:n] for ids, n in zip(self.completion_ids.tolist(), lengths)],
                                skip_special_tokens=True)

    def select(self, rows: torch.Tensor | slice) -> Rollout:
        """The rollout of some rows (an index, a boolean mask or a slice)."""
        return Rollout(*(getattr(self, f.name)[rows] for f in fields(self)))


def cat_rollouts(parts: list[Rollout], pad: int) -> Rollout:
    """Rollouts one after another, as one: prompts left padded and completions right padded to the widest
    (ids with ``pad``, masks and log-probs with 0)."""
    wp = max(p.prompt_ids.shape[1] for p in parts)
    wc = max(p.completion_ids.shape[1] for p in parts)

    def left(x: torch.Tensor, value: float) -> torch.Tensor:
        return torch.nn.functional.pad(x, (wp - x.shape[1], 0), value=value)

    def right(x: torch.Tensor, value: float) -> torch.Tensor:
        return torch.nn.functional.pad(x, (0, wc - x.shape[1]), value=value)

    return Rollout(torch.cat([left(p.prompt_ids, pad) for p in parts]), torch.cat([left(p.prompt_mask, 0) for p in parts]),
                   torch.cat([right(p.completion_ids, pad) for p in parts]),
                   torch.cat([right(p.completion_mask, 0) for p in parts]),
                   torch.cat([right(p.logprobs, 0.0) for p in parts]), torch.cat([p.truncated for p in parts]))


def _filter(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Top-k then nucleus (top-p, Holtzman et al. 2020) filtering: masked logits set to -inf."""
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, idx = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        remove = cum - sorted_logits.softmax(-1) >= top_p   # keep the smallest prefix with mass >= top_p
        logits = logits.masked_fill(remove.scatter(-1, idx, remove), float("-inf"))
    return logits


def sample(logits: torch.Tensor, s: SamplingConfig, generator: torch.Generator | None = None,
           u: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row of ``logits`` (B, V): the argmax at temperature 0, else a draw from
    softmax(logits / T) after top-k / top-p filtering, by inverse CDF (the first token whose cumulative
    probability exceeds u ~ U[0, total); one uniform per row, cheaper than ``torch.multinomial``). ``u``
    (B, 1) are the uniforms to use (default: drawn from ``generator``)."""
    if s.temperature == 0:
        return logits.argmax(-1)
    return draw(_filter(logits / s.temperature if s.temperature != 1 else logits, s.top_k, s.top_p).softmax(-1),
                generator, u)


def draw(p: torch.Tensor, generator: torch.Generator | None = None, u: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row of the (unnormalised) distributions p (..., V) by inverse CDF: the first token whose
    cumulative weight exceeds u ~ U[0, total), one uniform per row (``u`` (rows, 1) in [0, 1), or drawn from
    ``generator``)."""
    flat = p.reshape(-1, p.shape[-1])
    cdf = flat.cumsum(-1)
    if u is None:
        u = torch.rand(flat.shape[0], 1, generator=generator, device=p.device)
    return torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp_(max=p.shape[-1] - 1).reshape(p.shape[:-1])


def decode(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, s: SamplingConfig, generator: torch.Generator,
           eos: int, pad: int, logits: torch.Tensor, step: Callable[[int, torch.Tensor], torch.Tensor],
           keep_rows: Callable[[torch.Tensor], None] | None = None) -> Rollout:
    """Sample up to ``s.max_new_tokens`` tokens per row; a row stops at EOS (then pads).

    ``logits`` (B, 1, V) are the model's after the prompts; ``step(t, tokens)`` feeds the tokens drawn at
    step t (one per row still decoding) and returns the logits (rows, 1, V) after them. The engine behind
    ``step`` decides how (a KV cache, a hand-written forward, a full forward per step); this loop only
    samples and records the drawn tokens and their log-probs, so its memory grows with B x steps, not with
    the vocabulary. ``keep_rows(index)``, if the engine gives it, drops the finished rows from its state
    (keeps those at ``index``, in order), and later steps run only the rows still decoding: this happens
    whenever an eighth of them have finished. Each row's draws are the same either way (one uniform per
    prompt row and step, as without dropping).
    """
    (b, n), device = (prompt_ids.shape[0], s.max_new_tokens), prompt_ids.device
    tokens = torch.full((b, n), pad, dtype=torch.long, device=device)
    step_logprobs = torch.zeros(b, n, device=device)
    rows = torch.arange(b, device=device)  # the prompt rows the engine's state holds, in its order
    done = torch.zeros(b, dtype=torch.bool, device=device)
    for t in range(n):
        logits = logits[:, -1].float()
        u = None if s.temperature == 0 else torch.rand(b, 1, generator=generator, device=device)[rows]
        nxt = sample(logits, s, generator, u)
        nxt.masked_fill_(done, pad)
        # only the drawn token's log-prob is kept: no (B, V) logits outlive their step
        tokens[rows, t], step_logprobs[rows, t] = nxt, token_logprobs(logits, nxt, s.temperature or 1.0)
        done |= nxt == eos
        if t == n - 1 or bool(done.all()):  # no logits needed after the last token
            break
        if keep_rows is not None and int(done.sum()) * 8 >= done.numel():
            running = (~done).nonzero().squeeze(1)
            keep_rows(running)
            rows, done, nxt = rows[running], done[running], nxt[running]
        logits = step(t, nxt)
    return finish(prompt_ids, prompt_mask, tokens[:, :t + 1], step_logprobs[:, :t + 1], eos, pad)


def finish(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
           logprobs: torch.Tensor, eos: int, pad: int) -> Rollout:
    """The Rollout of decoded tokens (B, n) and their log-probs: each row ends at its first EOS (kept;
    the tokens after it become pad, their log-probs 0), and rows without one are truncated."""
    is_eos = (completion_ids == eos).long()
    # 1 up to and including the first EOS: positions where no EOS came strictly before
    completion_mask = ((is_eos.cumsum(1) - is_eos) == 0).long()
    return Rollout(prompt_ids, prompt_mask, completion_ids.masked_fill(completion_mask == 0, pad),
                   completion_mask, logprobs * completion_mask, truncated=is_eos.sum(1) == 0)
