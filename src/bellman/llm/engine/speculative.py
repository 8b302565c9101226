"""SpeculativeEngine: self-speculative decoding with draft heads (``bellman.llm.draft``), exact.

Each step the heads draft k tokens from the trunk's last hidden state; one ``lean_layers`` pass over the
pending token and the k drafts (k + 1 positions, against the KV cache) gives the policy's distributions
after each prefix, and the speculative-sampling rule (``bellman.llm.speculative``; Leviathan et al. 2023,
arXiv:2211.17192) keeps the accepted drafts and draws the next token, so every completion is a sample of the
policy (any temperature, top-k, top-p) and its log-probs are the policy's own. Rows accept different
numbers of drafts; instead of rolling the cache back, the rejected drafts' cache slots are masked out of
attention for good and every row's positions continue from its own length.

Verifying k drafts costs k + 1 positions of compute: where decoding is bound by reading the weights (a
small batch) they come almost free, where it is compute-bound (large batches on a CPU) they do not.
``draft_length`` picks k from the acceptance measured so far and the measured cost of a (k + 1)-position
pass at this batch size, and k = 0 (plain ``LeanEngine`` decoding) where speculation would be slower.

Usage::

    from bellman.llm.draft import load_heads
    from bellman.llm.engine.speculative import SpeculativeEngine
    engine = SpeculativeEngine(model, tok, load_heads("runs/draft", model), k=2)   # k="auto": batch-aware
    ro = engine.generate(prompts, SamplingConfig(temperature=1.0, max_new_tokens=64), seed=0)
    engine.acceptance()     # per head: the share of steps whose first j drafts all passed
"""

from __future__ import annotations

import time

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bellman.llm.batching import position_ids
from bellman.llm.draft import DraftHeads
from bellman.llm.engine.base import check_decoding_memory
from bellman.llm.engine.lean import (KVCache, LeanEngine, additive_mask, lean_forward, lean_layers, lean_supported,
                                     lean_weights, linear, rope)
from bellman.llm.logprobs import token_logprobs
from bellman.llm.rollout import Rollout, SamplingConfig, finish, sample
from bellman.llm.speculative import speculative_step


class SpeculativeEngine(LeanEngine):
    """``LeanEngine`` whose ``generate`` drafts with ``heads`` and verifies (``logprobs`` unchanged).

    ``k``: drafts per step (0: plain decoding), or "auto": ``draft_length`` per call."""

    def __init__(self, model: PreTrainedModel, tok: PreTrainedTokenizerBase, heads: DraftHeads,
                 k: int | str = "auto") -> None:
        super().__init__(model, tok)
        if not lean_supported(model):
            raise ValueError(f"speculative decoding runs on the lean path (plain Llama / Qwen2 models, see "
                             f"lean_supported), got {type(model).__name__}; use get_engine's plain engines")
        if not (k == "auto" or isinstance(k, int) and 0 <= k <= heads.heads):
            raise ValueError(f"k must be 'auto' or an int in [0, heads = {heads.heads}], got {k!r}")
        self.heads, self.k = heads, k
        self.reset_stats()
        self._costs: dict[tuple[int, int], float] = {}

    # ---- acceptance -------------------------------------------------------------------------------------
    def reset_stats(self) -> None:
        """Forget the acceptance measured so far."""
        self.steps = 0                                  # row-steps of verification (active rows)
        self.passed = torch.zeros(self.heads.heads)     # row-steps whose first j drafts passed, j = 1..K
        self.drafted = torch.zeros(self.heads.heads)    # row-steps that drafted at least j tokens

    def acceptance(self) -> list[float]:
        """Per head j: the share of verification steps (that drafted j tokens) whose first j drafts all
        passed; nan where none drafted j yet."""
        return [float(p / d) if d else float("nan") for p, d in zip(self.passed, self.drafted)]

    def tokens_per_step(self, k: int, acceptance: list[float] | None = None) -> float:
        """Expected tokens a k-draft step emits: 1 + sum_{j <= k} P(the first j drafts pass)."""
        a = acceptance or self.acceptance()
        return 1.0 + sum(0.0 if x != x else x for x in a[:k])

    # ---- the draft length --------------------------------------------------------------------------------
    def step_cost(self, batch: int, positions: int) -> float:
        """Seconds of one decoding step of ``positions`` tokens per row at this batch size against a 64-token
        cache: the drafts, the pass and the acceptance (or one plain draw), measured once per shape, best of 3."""
        key = (batch, positions)
        if key not in self._costs:
            model, device = self.model, next(self.model.parameters()).device
            weights, ctx = lean_weights(model, decoding=True), 64
            ids = torch.zeros(batch, ctx, dtype=torch.long, device=device)
            best = float("inf")
            with torch.inference_mode():
                for _ in range(3):
                    cache = KVCache(ctx + positions)
                    mask = torch.ones(batch, ctx, dtype=torch.long, device=device)
                    h = lean_forward(model, ids, mask, position_ids(mask), cache, 1, weights, hidden=True)[:, -1]
                    x = ids[:, :positions]
                    pos = ctx + torch.arange(positions, device=device).expand(batch, -1)
                    allowed = torch.ones(batch, positions, ctx + positions, dtype=torch.bool, device=device).tril(ctx)
                    s = SamplingConfig()
                    t0 = time.perf_counter()
                    if positions > 1:
                        drafts, draft_logits = self.heads.draft(model, h, x[:, 0], positions - 1, s)
                    out = lean_layers(model, x, rope(model, pos), additive_mask(model, allowed[:, None]), cache,
                                      weights=weights, hidden=True)
                    logits = linear(out, weights.head)
                    if positions > 1:
                        speculative_step(logits, draft_logits, drafts, s)
                    else:
                        token_logprobs(logits[:, -1], sample(logits[:, -1], s), 1.0)
                    best = min(best, time.perf_counter() - t0)
            self._costs[key] = best
        return self._costs[key]

    def draft_length(self, batch: int) -> int:
        """k maximising expected tokens per second, tokens_per_step(k) / step_cost(batch, k + 1), over
        0..K: 0 (plain decoding) where no k beats one token per plain step. Before any acceptance is
        measured, k = K (to measure it)."""
        if self.k != "auto":
            return self.k
        if not self.steps:
            return self.heads.heads
        rate = [self.tokens_per_step(k) / self.step_cost(batch, k + 1) for k in range(self.heads.heads + 1)]
        return max(range(len(rate)), key=rate.__getitem__)

    # ---- decoding ----------------------------------------------------------------------------------------
    def _decode(self, prompts: list[str], s: SamplingConfig, seed: int | None) -> Rollout:
        k = self.draft_length(len(prompts))
        if k == 0 or not s.use_cache:
            return super()._decode(prompts, s, seed)
        model, heads, eos, pad = self.model, self.heads, self.tok.eos_token_id, self.tok.pad_token_id
        prompt_ids, prompt_mask, g = self._start(prompts, seed, s.max_new_tokens)
        (b, p), n, device, t = prompt_ids.shape, s.max_new_tokens, prompt_ids.device, k + 1
        rows, cols = torch.arange(b, device=device), torch.arange(t, device=device)
        slots = p + t * n  # every step writes t cache slots; at most n - 1 steps follow the first token
        check_decoding_memory(model, b, slots)
        cache, weights = KVCache(max_len=slots), lean_weights(model, decoding=True)
        # additive attention bias of every cache slot (0: attended, -inf: padding, a rejected draft, unwritten)
        kv_bias = additive_mask(model, torch.zeros(b, slots, dtype=torch.bool, device=device))
        kv_bias[:, :p] = additive_mask(model, prompt_mask.bool())
        causal = additive_mask(model, torch.ones(t, t, dtype=torch.bool, device=device).tril())
        rot = rope(model, torch.arange(slots + t, device=device)[None])[0, 0]  # every position a row reaches
        h = lean_forward(model, prompt_ids, prompt_mask, position_ids(prompt_mask), cache, logits_to_keep=1,
                         weights=weights, hidden=True)[:, -1]
        logits = linear(h, weights.head).float()
        y = sample(logits, s, g)  # the pending token: decided, not yet in the cache
        out = torch.full((b, n + t), pad, dtype=torch.long, device=device)
        out_logp = torch.zeros(b, n + t, device=device)
        out[:, 0], out_logp[:, 0] = y, token_logprobs(logits, y, s.temperature or 1.0)
        filled, done = torch.ones(b, dtype=torch.long, device=device), y == eos
        length = prompt_mask.sum(1)  # the position of the pending token
        while not bool((done | (filled >= n)).all()):
            active = ~done & (filled < n)
            drafts, draft_logits = heads.draft(model, h, y, k, s, g)
            start = cache.length
            bias = torch.cat([kv_bias[:, None, None, :start].expand(b, 1, t, start), causal.expand(b, 1, t, t)], -1)
            hs = lean_layers(model, torch.cat([y[:, None], drafts], 1), rot[length[:, None] + cols][:, None], bias,
                             cache, weights=weights, hidden=True)
            target = linear(hs, weights.head)
            tokens, accepted, logp = speculative_step(target, draft_logits, drafts, s, g)
            kept = cols <= accepted[:, None]  # the pending token and the accepted drafts; the rest masked for good
            kv_bias[:, start:start + t] = additive_mask(model, kept)
            # written from each row's fill point on: the tokens past the accepted ones are overwritten by the
            # next step, and a finished row's land past its end (cut off or masked below)
            at = (filled[:, None] + cols).clamp(max=n + t - 1)
            out.scatter_(1, at, tokens)
            out_logp.scatter_(1, at, logp)
            done |= ((tokens == eos) & kept & active[:, None]).any(1)
            filled = filled + torch.where(active, accepted + 1, 0)
            length = length + accepted + 1
            h, y = hs[rows, accepted], tokens[rows, accepted]
            self._count(accepted[active], k)
        return finish(prompt_ids, prompt_mask, out[:, :n], out_logp[:, :n], eos, pad)

    def _count(self, accepted: torch.Tensor, k: int) -> None:
        """Record a step's acceptance: rows that drafted k tokens and passed their first j, j = 1..k."""
        j = torch.arange(1, k + 1)
        self.steps += accepted.numel()
        self.drafted[:k] += accepted.numel()
        self.passed[:k] += (accepted.cpu()[:, None] >= j).sum(0).float()
