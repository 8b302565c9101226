"""LeanEngine: Llama / Qwen2 models in plain torch over their own weights, without the per-call machinery.

The Hugging Face forward of a small model spends most of one decoding step building masks, cache objects
and output records; ``lean_forward`` computes the same numbers from the model's weights directly: RMSNorm
(Zhang & Sennrich 2019, arXiv:1910.07467), rotary position embeddings (RoPE: Su et al. 2021, "RoFormer",
arXiv:2104.09864) applied as complex products, grouped-query attention (Ainslie et al. 2023,
arXiv:2305.13245) and the SiLU-gated MLP (Shazeer 2020, "GLU Variants Improve Transformer",
arXiv:2002.05202), as in Llama (Touvron et al. 2023, arXiv:2302.13971) and Qwen2 (Yang et al. 2024,
arXiv:2407.10671). ``lean_layers`` is its body, given RoPE rotations and an attention mask built by the
caller.

``LeanEngine`` decodes through it into a preallocated ``KVCache`` (keys and values of earlier tokens kept,
each step runs only the new token: Pope et al. 2022, arXiv:2211.05102), with the RoPE rotations and
attention mask of all steps built once, a prompt repeated for a group prefilled once and finished rows
dropped from the batch as they accumulate (``rollout.decode``); and it scores a
shared prompt's completions with one ``lean_layers`` call over a ``PromptTree`` (the tokens flat, attention
per completion). It falls back to ``HFEngine`` (the model's own forward) for anything ``lean_supported``
rejects (other architectures, peft wrappers, gradient checkpointing), for ``use_cache=False`` and for
completions that do not share a prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from bellman.llm.batching import position_ids
from bellman.llm.engine.base import autograd, check_context, check_logprobs_batch
from bellman.llm.engine.hf import HFEngine
from bellman.llm.logprobs import head_logprobs, scatter_logprobs
from bellman.llm.rollout import Rollout, SamplingConfig, decode


LEAN_ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM")


def lean_supported(model: PreTrainedModel) -> bool:
    """True where ``lean_forward`` computes what the Hugging Face forward does: a plain Llama or Qwen2 causal
    LM (no peft wrapper, no gradient checkpointing, no attention dropout) with a SiLU MLP, full attention
    on every layer and RoPE frequencies that do not change with the sequence length (not the dynamic or
    LongRoPE scalings: ``lean_forward`` rotates a whole decoding's positions at once). Anything else,
    the built-in ``BellmanForCausalLM`` included, runs through the model's own forward."""
    if type(model).__name__ not in LEAN_ARCHITECTURES:
        return False
    cfg, m = model.config, model.model
    rope_type = (getattr(cfg, "rope_parameters", None) or {}).get("rope_type", "default")
    # these models checkpoint their decoder layers (and flag the stack): no walk over all modules needed
    return (cfg.hidden_act == "silu" and not cfg.attention_dropout and rope_type not in ("dynamic", "longrope")
            and not any(getattr(x, "gradient_checkpointing", False) for x in (m, *m.layers))
            and all(t == "full_attention" for t in getattr(cfg, "layer_types", None) or ()))


class KVCache:
    """Keys and values (B, H_kv, T, d) of every layer for ``lean_forward`` while decoding (no gradients),
    written into buffers of ``max_len`` positions and extended by every call it makes."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self.length = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this call's keys / values to the layer's cached ones; return all of them."""
        if layer == len(self.k):
            self.k.append(k.new_empty(*k.shape[:2], self.max_len, k.shape[3]))
            self.v.append(v.new_empty(*v.shape[:2], self.max_len, v.shape[3]))
        end = self.length + k.shape[2]
        self.k[layer][:, :, self.length:end] = k
        self.v[layer][:, :, self.length:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def select(self, rows: torch.Tensor) -> None:
        """Keep these rows, in this order, repeats allowed (one prompt's keys / values for its n completions)."""
        self.k = [x[rows] for x in self.k]
        self.v = [x[rows] for x in self.v]


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return F.rms_norm(x, weight.shape, weight, eps)


def rope(model: PreTrainedModel, position_ids: torch.Tensor) -> torch.Tensor:
    """The model's rotary embedding at these positions as complex numbers cos + i sin (B, 1, T, d / 2), in
    float32: RoPE turns each pair (x_j, x_{j + d/2}) of a head's dimensions by one angle (Su et al. 2021, in
    transformers' ``rotate_half`` layout), which ``_rotate`` applies as one complex product."""
    cos, sin = model.model.rotary_emb(model.model.embed_tokens.weight, position_ids)
    half = cos.shape[-1] // 2
    return torch.complex(cos[..., :half].float(), sin[..., :half].float())[:, None]


def _rotate(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """RoPE on x (B, H, T, d) whose head dimensions are in ``_pairs`` order: every (even, odd) pair is one
    complex number, multiplied by ``rot`` (in float32, returned in x's dtype)."""
    z = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(z * rot).flatten(-2).to(x.dtype)


def _pairs(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Rows (dim 0) of a q / k projection's weight or bias with each head's dimensions reordered
    0, d/2, 1, d/2 + 1, ...: RoPE's rotated pairs become adjacent. Attention scores are dot products of
    queries and keys, so giving both the same order changes nothing else; values keep theirs."""
    return w.unflatten(0, (heads, 2, -1)).transpose(1, 2).reshape(w.shape)


class Proj(NamedTuple):
    """A linear map's weight (out, in) and bias, and optionally a contiguous copy of W^T (in, out), used for
    inputs of ``rows[0] <= rows < rows[1]`` rows."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    transposed: torch.Tensor | None = None
    rows: tuple[int, int] = (4, 1 << 62)


def linear(x: torch.Tensor, w: Proj) -> torch.Tensor:
    """x W^T + b: through the (in, out) copy where there is one and x's rows are in its range, else
    ``F.linear``."""
    rows = x.numel() // x.shape[-1]
    if w.transposed is None or not w.rows[0] <= rows < w.rows[1]:
        return F.linear(x, w.weight, w.bias)
    y = x @ w.transposed
    return y if w.bias is None else y + w.bias


class LeanWeights(NamedTuple):
    """``lean_layers``' weights: per layer the q, k, v, o, gate, up and down ``Proj`` and the two norms; the
    output head's ``Proj``."""

    layers: list[tuple]
    head: Proj


def lean_weights(model: PreTrainedModel, decoding: bool = False) -> LeanWeights:
    """The model's weights for ``lean_layers``, q and k in ``_pairs`` order. Built once per ``generate`` call;
    inside autograd the reordering is differentiable. Separate projections rather than one stacked q/k/v
    (gate/up) product: the stacking's weight copies and its backward's concatenations cost more than the
    extra small products.

    ``decoding`` (outside autograd, weights on the CPU): the maps also get contiguous copies of W^T for the
    products of a few rows (one token per row, or a few drafts) that decoding makes. torch's CPU matrix
    multiply runs x @ W^T with W^T stored (in, out) 1.1-1.4x (64 rows) to 1.2-2.3x (4-8 rows) faster than
    ``F.linear``'s (out, in) layout on SmolLM2's projection shapes, one thread, and no faster for 1-3 rows or
    thousands, so the copies serve 4 rows or more; the output head's (576 x 49,152) copy is 1.25-1.6x
    faster for 4-8 rows and slower from 32, so it serves 4-31 rows. A whole ``generate`` of 64 completions
    of 64 tokens is 1.07-1.15x faster (``benchmarks/decode_layout.py``). The price is one copy of the
    weights for the call."""
    cfg, layers = model.config, []
    t = decoding and model.device.type == "cpu" and not torch.is_grad_enabled()

    def one(lin, heads=0, rows=Proj._field_defaults["rows"]):
        w, b = (x if x is None or not heads else _pairs(x, heads) for x in (lin.weight, lin.bias))
        return Proj(w, b, w.t().contiguous() if t else None, rows)

    for layer in model.model.layers:
        a, mlp = layer.self_attn, layer.mlp
        layers.append((one(a.q_proj, cfg.num_attention_heads), one(a.k_proj, cfg.num_key_value_heads),
                       one(a.v_proj), one(a.o_proj), one(mlp.gate_proj), one(mlp.up_proj), one(mlp.down_proj),
                       layer.input_layernorm, layer.post_attention_layernorm))
    return LeanWeights(layers, one(model.lm_head, rows=(4, 32)))


def lean_forward(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 position_ids: torch.Tensor, cache: KVCache | None = None, logits_to_keep: int = 0,
                 weights: LeanWeights | None = None, segments: torch.Tensor | None = None,
                 hidden: bool = False) -> torch.Tensor:
    """Logits (B, T or logits_to_keep, V) of a Llama / Qwen2 model (``lean_supported``) in plain torch over its
    own weights: the Hugging Face forward without its per-call machinery (mask builders,
    cache objects, output records), which dominates one decoding step of a small model.

    ``attention_mask`` (B, K) covers the cached keys and these T tokens; ``cache`` (if given) receives
    this call's keys / values; ``weights`` is ``lean_weights(model)`` (built here if None).
    ``segments`` (B, T), for rows that pack several sequences (no cache): a token attends only to earlier
    tokens with the same segment id, so each sequence gets the numbers of its own forward pass when its
    ``position_ids`` restart at 0. ``hidden`` returns the final (normed) hidden states instead of the
    logits, for the LM head to be applied a chunk at a time (``logprobs.head_logprobs``). Gradients flow as
    through the Hugging Face forward.
    """
    if not lean_supported(model):
        raise ValueError(f"lean_forward runs plain Llama / Qwen2 models (see lean_supported), got "
                         f"{type(model).__name__}; call the model's own forward instead")
    start = cache.length if cache is not None else 0
    if input_ids.dim() != 2 or attention_mask.shape != (input_ids.shape[0], start + input_ids.shape[1]):
        raise ValueError(f"input_ids must be (B, T) and attention_mask (B, cached + T) = (B, {start} + T), got "
                         f"{tuple(input_ids.shape)} and {tuple(attention_mask.shape)}")
    if segments is not None and (cache is not None or segments.shape != input_ids.shape):
        raise ValueError(f"segments must be (B, T) = {tuple(input_ids.shape)} and come without a cache, got "
                         f"{tuple(segments.shape)}{' and a cache' if cache is not None else ''}")
    key = torch.arange(start + input_ids.shape[1], device=input_ids.device)
    query = key[start:, None]
    # additive mask: 0 where a query attends (causal, keys that are not padding; a padding query sees
    # itself, its output is never used), -inf elsewhere
    allowed = (key <= query) & attention_mask[:, None, None, :].bool()
    if segments is not None:
        allowed = allowed & (segments[:, None, :, None] == segments[:, None, None, :])
    allowed = allowed | (key == query)
    return lean_layers(model, input_ids, rope(model, position_ids), additive_mask(model, allowed), cache,
                       logits_to_keep, weights, hidden=hidden)


def additive_mask(model: PreTrainedModel, allowed: torch.Tensor) -> torch.Tensor:
    """The attention mask ``lean_layers`` adds to the scores: 0 where ``allowed``, -inf elsewhere, in the
    model's dtype."""
    return torch.zeros(allowed.shape, dtype=model.model.embed_tokens.weight.dtype,
                       device=allowed.device).masked_fill_(~allowed, float("-inf"))


def lean_layers(model: PreTrainedModel, input_ids: torch.Tensor, rot: torch.Tensor,
                bias: torch.Tensor | None = None, cache: KVCache | None = None,
                logits_to_keep: int | torch.Tensor = 0, weights: LeanWeights | None = None,
                attend: Callable[..., torch.Tensor] | None = None, hidden: bool = False) -> torch.Tensor:
    """``lean_forward`` given its RoPE rotations ``rope(model, position_ids)`` and additive attention mask
    ``bias`` (B, 1, T, K), without input checks: a decoding loop builds both once and slices them per step.
    ``attend(q, k, v, scale)`` (all (B, H, T, d)), if given, computes the attention instead (``PromptTree``);
    ``logits_to_keep`` is a count of last positions (0: all) or a 1-D tensor of positions, as in transformers;
    ``hidden`` returns the normed hidden states there instead of the logits."""
    m, cfg, (b, t) = model.model, model.config, input_ids.shape
    n_q, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    d = 2 * rot.shape[-1]
    x = F.embedding(input_ids, m.embed_tokens.weight, m.embed_tokens.padding_idx)
    weights = weights or lean_weights(model)
    for i, (w_q, w_k, w_v, w_o, w_gate, w_up, w_down, ln1, ln2) in enumerate(weights.layers):
        h = _rms_norm(x, ln1.weight, ln1.variance_epsilon)
        q = _rotate(linear(h, w_q).view(b, t, n_q, d).transpose(1, 2), rot)
        k = _rotate(linear(h, w_k).view(b, t, n_kv, d).transpose(1, 2), rot)
        v = linear(h, w_v).view(b, t, n_kv, d).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(i, k, v)
        # grouped-query attention (Ainslie et al. 2023): query head j reads key / value head j // (n_q / n_kv),
        # without copying the keys and values n_q / n_kv times
        if attend is not None:
            o = attend(q, k, v, d ** -0.5)
        elif t == 1:  # decoding, one query per row: eager attention is the cheapest call; each key / value
            # head's group of queries in one (n_q / n_kv, K) product
            g = q.reshape(b, n_kv, n_q // n_kv, d)
            o = (torch.softmax(g @ k.transpose(2, 3) * d ** -0.5 + bias, -1, dtype=torch.float32).to(q.dtype) @ v
                 ).view(b, n_q, 1, d)
        else:  # SDPA's fused kernels: no (T, K) score matrix kept for long prompts on GPUs
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=d ** -0.5, enable_gqa=n_kv != n_q)
        x = x + linear(o.transpose(1, 2).reshape(b, t, n_q * d), w_o)
        h = _rms_norm(x, ln2.weight, ln2.variance_epsilon)
        x = x + linear(F.silu(linear(h, w_gate)) * linear(h, w_up), w_down)
    if cache is not None:
        cache.length += t
    if isinstance(logits_to_keep, torch.Tensor):
        x = x[:, logits_to_keep]
    elif logits_to_keep:
        x = x[:, -logits_to_keep:]
    x = _rms_norm(x, m.norm.weight, m.norm.variance_epsilon)
    return x if hidden else linear(x, weights.head)


class PromptTree:
    """B prompts (left padded, (B, P)) with n completions each (right padded, (B n, C)) as one flat sequence
    of N = B P + N_c tokens for ``lean_layers``: every prompt token, then every completion token some logit
    is read after (token j of a completion of length L for j < L - 1), no padding. Linear layers see each
    token once; ``attend`` computes attention per prompt (causal over its tokens) and per completion (its
    prompt's tokens, then its own earlier tokens), so the cost grows with n C (P + C), not with (P + n C)^2 as
    one row per prompt would. Positions are those each token has in its own unpadded prompt + completion;
    the attention masks are additive, in ``model``'s dtype.

    ``read`` are the tokens whose logits are needed (each prompt's last, every completion token kept);
    ``before`` (B n, C) indexes them: the logit before completion token j (the prompt's last for j = 0 and
    off the completion mask)."""

    def __init__(self, model: PreTrainedModel, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                 completion_ids: torch.Tensor, completion_mask: torch.Tensor) -> None:
        (b, p), (bn, c), device = prompt_ids.shape, completion_ids.shape, prompt_ids.device
        length = completion_mask.sum(1)
        w = max(int(length.max()) - 1, 0)  # completion tokens per row in the attention blocks
        kept = torch.arange(w, device=device) < (length - 1)[:, None]  # (B n, w)
        n_c = int(kept.sum())
        self.b, self.p, self.w = b, p, w
        self.group = torch.arange(b, device=device).repeat_interleave(bn // b)  # prompt of every completion
        # flat index of block slot (row, j) (padding slots read the first completion token, unused), and the
        # block slot of every flat completion token
        slot = torch.zeros(bn, w, dtype=torch.long, device=device)
        slot[kept] = torch.arange(n_c, device=device)
        self.scatter = kept.reshape(-1).nonzero().squeeze(1)
        self.queries = b * p + slot  # (B n, w)
        self.keys = torch.cat([self.group[:, None] * p + torch.arange(p, device=device), self.queries], 1)
        prompt_len = prompt_mask.sum(1)
        self.ids = torch.cat([prompt_ids.reshape(-1), completion_ids[:, :w][kept]])[None]
        self.positions = torch.cat([position_ids(prompt_mask).reshape(-1),
                                    (prompt_len[self.group, None] + torch.arange(w, device=device))[kept]])[None]
        # attention: causal over a prompt's own tokens; a completion sees its prompt's tokens and its own
        # earlier ones; every query sees itself (a padding query's output is never read)
        cols = torch.arange(max(p, w), device=device)
        causal = cols[:p, None] >= cols[:p]
        self.prompt_bias = additive_mask(model, (causal & prompt_mask[:, None, :].bool())
                                         | torch.eye(p, dtype=torch.bool, device=device))[:, None]
        own = (cols[:w, None] >= cols[:w]) & kept[:, None, :] | torch.eye(w, dtype=torch.bool, device=device)
        self.completion_bias = additive_mask(model, torch.cat(
            [prompt_mask[self.group, None, :].bool().expand(bn, w, p), own], 2))[:, None]
        # logits read: every prompt's last token (B), then every kept completion token (N_c)
        self.read = torch.cat([torch.arange(b, device=device) * p + p - 1, b * p + torch.arange(n_c, device=device)])
        self.before = self.group[:, None].repeat(1, c)  # the prompt's last, unless token j - 1 was kept
        self.before[:, 1:w + 1] = torch.where(kept, b + slot, self.before[:, 1:w + 1])

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
        """Attention output (1, H, N, d) of queries, keys and values (1, H, N, d) over the tree's blocks; blocks
        are gathered and scattered along the token dimension, in the token-major memory the projections use."""
        (h, d), bp = q.shape[1::2], self.b * self.p
        q, k, v = (x[0].transpose(0, 1) for x in (q, k, v))  # (N, H, d)

        def prompts(x):  # (B, H, P, d)
            return x[:bp].unflatten(0, (self.b, self.p)).transpose(1, 2)

        def blocks(x, index):  # (B n, H, len, d): the tokens ``index`` (B n, len) of every completion's block
            return x.index_select(0, index.reshape(-1)).unflatten(0, index.shape).transpose(1, 2)

        gqa = k.shape[1] != h  # grouped-query attention: fewer key / value heads than query heads
        o = F.scaled_dot_product_attention(prompts(q), prompts(k), prompts(v),
                                           attn_mask=self.prompt_bias, scale=scale, enable_gqa=gqa)
        o = [o.transpose(1, 2).reshape(bp, h * d)]
        if self.w:
            o_c = F.scaled_dot_product_attention(blocks(q, self.queries), blocks(k, self.keys), blocks(v, self.keys),
                                                 attn_mask=self.completion_bias, scale=scale, enable_gqa=gqa)
            o.append(o_c.transpose(1, 2).reshape(-1, h * d).index_select(0, self.scatter))
        return torch.cat(o).unflatten(1, (h, d)).transpose(0, 1)[None]


class LeanEngine(HFEngine):
    """Llama / Qwen2 models (``lean_supported``) through ``lean_layers``; everything else as ``HFEngine``."""

    def _decode(self, prompts: list[str], s: SamplingConfig, seed: int | None) -> Rollout:
        model = self.model
        if not (s.use_cache and lean_supported(model)):
            return super()._decode(prompts, s, seed)
        prompt_ids, prompt_mask, g = self._start(prompts, seed, s.max_new_tokens)
        (b, p), n, device = prompt_ids.shape, s.max_new_tokens, prompt_ids.device
        mask = torch.cat([prompt_mask, prompt_mask.new_ones(b, n)], dim=1)  # grows into the completion columns
        pos = position_ids(prompt_mask)
        cache, weights = KVCache(max_len=p + n), lean_weights(model, decoding=True)
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

        def step(t: int, nxt: torch.Tensor) -> torch.Tensor:
            return lean_layers(model, nxt[:, None], rot[:, :, t:t + 1], bias[..., :p + t + 1], cache, weights=weights)

        def keep_rows(rows: torch.Tensor) -> None:  # finished rows leave the batch: their cache, mask, rotations
            nonlocal rot, bias
            cache.select(rows)
            rot, bias = rot[rows], bias[rows]

        return decode(prompt_ids, prompt_mask, s, g, self.tok.eos_token_id, self.tok.pad_token_id, logits, step,
                      keep_rows)

    def logprobs(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                 completion_mask: torch.Tensor, temperature: float = 1.0, *, shared_prompt: bool = False,
                 grad: bool = True) -> torch.Tensor:
        """A shared prompt's completions in one ``lean_layers`` call over their ``PromptTree`` (gradients flow
        through the prompt's one pass); unshared prompts, and models outside the lean path, as ``HFEngine``."""
        if not (shared_prompt and lean_supported(self.model)):
            return super().logprobs(prompt_ids, prompt_mask, completion_ids, completion_mask, temperature,
                                    shared_prompt=shared_prompt, grad=grad)
        check_logprobs_batch(prompt_ids, prompt_mask, completion_ids, completion_mask, temperature, shared_prompt)
        check_context(self.model, int(prompt_mask.sum(1).max()), completion_ids.shape[1])
        with autograd(grad):
            tree = PromptTree(self.model, prompt_ids, prompt_mask, completion_ids, completion_mask)
            h = lean_layers(self.model, tree.ids, rope(self.model, tree.positions), attend=tree.attend,
                            logits_to_keep=tree.read, hidden=True)[0]
            m = completion_mask.bool()
            values = head_logprobs([h], self.model.lm_head, tree.before[m], completion_ids[m], temperature)
            return scatter_logprobs(values, completion_mask)
