"""Rollout engine: batched sampling with a KV cache, returning ids, per-token log-probs and masks.

Usage::

    from bellman.llm.rollout import SamplingConfig, generate
    ro = generate(model, tok, ["1+2=", "10+20="], SamplingConfig(temperature=1.0, max_new_tokens=16), seed=0)
    ro.completion_ids, ro.completion_mask, ro.logprobs     # (B, C) each, right padded
    ro.completions(tok)                                    # decoded text, cut at EOS
    generate(model, tok, prompts, SamplingConfig(temperature=0.0))   # greedy

``logprobs`` are log pi(token) under the temperature-scaled distribution before top-k / top-p
filtering (the same numbers ``completion_logprobs(..., temperature=T)`` computes), so they serve as the
"old" policy log-probs of PPO/GRPO. The completion mask is 1 up to and including the first EOS.

vLLM backend (GPU machines, optional, not a dependency): generate with ``vllm.LLM(model=DIR)`` and
``SamplingParams(n=G, temperature=T, top_p=p, top_k=k, max_tokens=N, logprobs=0)`` from the directory
the trainer writes with ``save_pretrained``, then re-encode prompts/completions with
``encode_prompts`` / ``encode_completions`` and recompute log-probs with ``completion_logprobs``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bellman.llm.config import SamplingConfig
from bellman.llm.model import (KVCache, additive_mask, encode_prompts, lean_forward, lean_layers, lean_supported,
                               lean_weights, rope)


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


def sample(logits: torch.Tensor, s: SamplingConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of ``logits`` (B, V): the argmax at temperature 0, else a draw from
    softmax(logits / T) after top-k / top-p filtering, by inverse CDF (the first token whose cumulative
    probability exceeds u ~ U[0, total); one uniform per row, cheaper than ``torch.multinomial``)."""
    if s.temperature == 0:
        return logits.argmax(-1)
    cdf = _filter(logits / s.temperature if s.temperature != 1 else logits, s.top_k, s.top_p).softmax(-1).cumsum(-1)
    u = torch.rand(logits.shape[0], 1, generator=generator, device=logits.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=logits.shape[-1] - 1)


def generate(model: PreTrainedModel, tok: PreTrainedTokenizerBase, prompts: list[str],
             sampling: SamplingConfig | None = None, seed: int | None = None) -> Rollout:
    """Sample one completion per prompt (repeat prompts for groups); stops a row at EOS.

    With the KV cache on, Llama / Qwen2 models decode through ``lean_layers`` (the numbers of the Hugging
    Face forward without its per-call overhead) into a preallocated cache, with the RoPE rotations and attention
    mask of all steps built once, and a prompt repeated for a group is prefilled once; other models, and
    ``use_cache=False``, go through the model's own forward.
    Decoding runs under ``torch.inference_mode``; the returned tensors are ordinary copies, so a loss may
    use them.
    """
    with torch.inference_mode():
        ro = _decode(model, tok, prompts, sampling or SamplingConfig(), seed)
    return Rollout(*(getattr(ro, f.name).clone() for f in fields(Rollout)))


def _decode(model: PreTrainedModel, tok: PreTrainedTokenizerBase, prompts: list[str], s: SamplingConfig,
            seed: int | None) -> Rollout:
    prompt_ids, prompt_mask = encode_prompts(tok, prompts)
    device = next(model.parameters()).device
    prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
    g = torch.Generator(device=device)
    g.manual_seed(seed if seed is not None else int(torch.randint(2**31, ())))
    eos, pad = tok.eos_token_id, tok.pad_token_id
    (b, p), n = prompt_ids.shape, s.max_new_tokens
    mask = torch.cat([prompt_mask, prompt_mask.new_ones(b, n)], dim=1)  # grows into the completion columns
    pos = (prompt_mask.cumsum(1) - 1).clamp(min=0)
    lean = s.use_cache and lean_supported(model)
    if lean:
        cache, weights = KVCache(max_len=p + n), lean_weights(model)
        # each distinct prompt is run once (rows: its first occurrence); inverse maps every row to it
        first = {}
        for i, q in enumerate(prompts):
            first.setdefault(q, i)
        slot = {q: j for j, q in enumerate(first)}
        rows = torch.tensor(list(first.values()), device=device)
        inverse = torch.tensor([slot[q] for q in prompts], device=device)
        logits = lean_forward(model, prompt_ids[rows], prompt_mask[rows], pos[rows], cache, logits_to_keep=1,
                              weights=weights)[inverse]
        cache.select(inverse)
        # RoPE rotations of the n positions after each prompt and the additive mask of all p + n keys, built once
        rot = rope(model, pos[:, -1:] + 1 + torch.arange(n, device=device))
        bias = additive_mask(model, mask[:, None, None] != 0)
    else:
        out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=pos, use_cache=s.use_cache,
                    logits_to_keep=1)
        logits = out.logits
    ids, tokens, step_logits = prompt_ids, [], []
    done = torch.zeros(b, dtype=torch.bool, device=device)
    for t in range(n):
        logits = logits[:, -1].float()
        step_logits.append(logits)
        nxt = sample(logits, s, g)
        nxt.masked_fill_(done, pad)
        tokens.append(nxt)
        done |= nxt == eos
        if t == n - 1 or bool(done.all()):  # no logits needed after the last token
            break
        if lean:
            logits = lean_layers(model, nxt[:, None], rot[:, :, t:t + 1], bias[..., :p + t + 1],
                                 cache, weights=weights)
        elif s.use_cache:
            pos = pos[:, -1:] + 1
            out = model(input_ids=nxt[:, None], attention_mask=mask[:, :p + t + 1], position_ids=pos,
                        past_key_values=out.past_key_values, use_cache=True)
            logits = out.logits
        else:
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            m = mask[:, :p + t + 1]
            logits = model(input_ids=ids, attention_mask=m, position_ids=(m.cumsum(1) - 1).clamp(min=0),
                           use_cache=False, logits_to_keep=1).logits
    completion_ids = torch.stack(tokens, dim=1)
    is_eos = (completion_ids == eos).long()
    # 1 up to and including the first EOS: positions where no EOS came strictly before
    completion_mask = ((is_eos.cumsum(1) - is_eos) == 0).long()
    logp_all = torch.log_softmax(torch.stack(step_logits, dim=1) / (s.temperature or 1.0), dim=-1)
    logprobs = logp_all.gather(-1, completion_ids[..., None]).squeeze(-1) * completion_mask
    return Rollout(prompt_ids, prompt_mask, completion_ids, completion_mask, logprobs,
                   truncated=is_eos.sum(1) == 0)
