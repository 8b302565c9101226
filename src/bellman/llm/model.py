"""The policy: any Hugging Face causal LM from a local directory, or the built-in tiny model.

Usage::

    from bellman.llm.model import load_model, encode_prompts, encode_completions, completion_logprobs
    model, tok = load_model("tiny", seed=0)             # or load_model("/path/to/qwen", lora=LoraSpec())
    p_ids, p_mask = encode_prompts(tok, ["1+2=", "10+20="])          # left padded
    c_ids, c_mask = encode_completions(tok, ["3", "30"])              # right padded, EOS appended
    logp = completion_logprobs(model, p_ids, p_mask, c_ids, c_mask)   # (B, C), zero off the completion

Sequences are ``prompt (left padded) + completion (right padded)``; only completion tokens carry loss,
log-probs and KL (the response y of Ouyang et al. 2022, arXiv:2203.02155, eq. 2). Position ids are computed
from the attention mask, so a left-padded batch gives the same log-probs as one unpadded forward pass per row.

The built-in tiny model is a small Llama config from transformers (``LlamaForCausalLM``) with a
character-level tokenizer built in code with ``tokenizers`` and wrapped as ``PreTrainedTokenizerFast``,
so ``save_pretrained`` / ``from_pretrained`` round-trip like any hub model. No hub download ever.

``lean_forward`` runs a Llama / Qwen2 model in plain torch over its own weights (the Hugging Face numbers
without the per-call machinery that dominates one decoding step of a small model); ``lean_layers`` is its
body, given RoPE rotations and an attention mask built by the caller. ``generate`` decodes through it and
``shared_prompt_logprobs`` runs each prompt once with its completions through it (``PromptTree``: the
tokens flat, attention per completion), falling back to the model's own forward for anything
``lean_supported`` rejects (other architectures, peft wrappers, gradient checkpointing).
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (AutoModelForCausalLM, AutoTokenizer, DynamicCache, LlamaConfig, PreTrainedModel,
                          PreTrainedTokenizerFast)

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
CHARS = string.printable.replace("\x0b", "").replace("\x0c", "").replace("\r", "")


def char_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer: one id per printable ASCII character plus pad/bos/eos/unk."""
    vocab = {t: i for i, t in enumerate([PAD, BOS, EOS, UNK, *CHARS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS,
                                   unk_token=UNK, padding_side="left", clean_up_tokenization_spaces=False)


@dataclass
class TinyConfig:
    """Size of the built-in tiny Llama (about 0.8M parameters with the defaults)."""

    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    max_position_embeddings: int = 256


def tiny_model(config: TinyConfig | None = None, seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """The built-in tiny causal LM (a ``LlamaForCausalLM``) and its character tokenizer, seeded."""
    c = config or TinyConfig()
    tok = char_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                      num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
                      num_key_value_heads=c.num_attention_heads, max_position_embeddings=c.max_position_embeddings,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      tie_word_embeddings=True, attn_implementation="sdpa")
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa"), tok


@dataclass
class LoraSpec:
    """LoRA adapter settings passed to peft (Hu et al. 2021, "LoRA"); defaults as in peft/TRL examples."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = field(default_factory=lambda: "all-linear")


def load_model(name_or_path: str | Path = "tiny", *, seed: int = 0, dtype: str = "float32",
               gradient_checkpointing: bool = False, lora: LoraSpec | None = None,
               ) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load ``"tiny"`` (built-in) or a causal LM + tokenizer saved with ``save_pretrained`` in a local directory.

    ``dtype`` is "float32" or "bfloat16"; ``gradient_checkpointing`` trades compute for memory; ``lora``
    wraps the model in peft LoRA adapters (only the adapters train).
    """
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {dtype!r}")
    if lora is not None and not isinstance(lora, LoraSpec):
        raise TypeError(f"lora must be a LoraSpec or None, got {type(lora).__name__}")
    if str(name_or_path) == "tiny":
        model, tok = tiny_model(seed=seed)
    else:
        path = Path(name_or_path)
        if not path.is_dir():
            raise FileNotFoundError(f"model path {str(path)!r} is not a directory; pass 'tiny' or a local "
                                    "directory written by save_pretrained (no hub downloads)")
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        if tok.pad_token_id is None:
            raise ValueError(f"tokenizer at {str(path)!r} has no pad token; set tokenizer.pad_token "
                             "(e.g. to its eos_token) and save it again")
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    tok.padding_side = "left"
    model = model.to(getattr(torch, dtype))
    if gradient_checkpointing:
        getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
        model.config.use_cache = False
    if lora is not None:
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                                 target_modules=lora.target_modules, task_type="CAUSAL_LM"))
    return model, tok


def encode_prompts(tok: PreTrainedTokenizerFast, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask of prompts, left padded: (B, P) each."""
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts must be a non-empty list of strings")
    distinct = list(dict.fromkeys(prompts))  # a prompt repeated for a group is tokenised once
    ids = dict(zip(distinct, tok(distinct, add_special_tokens=False)["input_ids"]))
    return _pad([ids[p] for p in prompts], tok.pad_token_id, left=True)


def encode_completions(tok: PreTrainedTokenizerFast, completions: list[str], eos: bool = True,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and completion mask of completions, right padded, EOS appended if ``eos``: (B, C) each."""
    if not completions or not all(isinstance(c, str) for c in completions):
        raise ValueError("completions must be a non-empty list of strings")
    ids = [x + ([tok.eos_token_id] if eos else []) for x in tok(completions, add_special_tokens=False)["input_ids"]]
    return _pad(ids, tok.pad_token_id, left=False)


def _pad(ids: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(x) for x in ids])
    width = max(1, int(lengths.max()))
    column = torch.arange(width)
    mask = column >= width - lengths[:, None] if left else column < lengths[:, None]
    out = torch.full((len(ids), width), pad_id, dtype=torch.long)
    out[mask] = torch.tensor([t for x in ids for t in x], dtype=torch.long)  # row-major, as the mask
    return out, mask.long()


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
    position_ids = (mask.cumsum(1) - 1).clamp(min=0)
    c = completion_ids.shape[1]
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False,
                   logits_to_keep=c + 1).logits[:, :-1].float() / temperature
    logp = torch.log_softmax(logits, dim=-1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
    return logp * completion_mask


LEAN_ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM")


def lean_supported(model: PreTrainedModel) -> bool:
    """True where ``lean_forward`` computes what the Hugging Face forward does: a plain Llama or Qwen2 causal
    LM (no peft wrapper, no gradient checkpointing, no attention dropout) with a SiLU MLP and full attention
    on every layer. Anything else runs through the model's own forward."""
    if type(model).__name__ not in LEAN_ARCHITECTURES:
        return False
    cfg, m = model.config, model.model
    # these models checkpoint their decoder layers (and flag the stack): no walk over all modules needed
    return (cfg.hidden_act == "silu" and not cfg.attention_dropout
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


def lean_weights(model: PreTrainedModel) -> list[tuple]:
    """Per layer: the q, k, v, o, gate, up and down projections as (weight, bias), q and k in ``_pairs``
    order, and the two norms. Built once per ``generate`` call; inside autograd the reordering is
    differentiable. Separate projections rather than one stacked q/k/v (gate/up) product: the stacking's
    weight copies and its backward's concatenations cost more than the extra small products."""
    cfg, out = model.config, []

    def one(lin, heads=0):
        return tuple(t if t is None or not heads else _pairs(t, heads) for t in (lin.weight, lin.bias))

    for layer in model.model.layers:
        a, mlp = layer.self_attn, layer.mlp
        out.append((one(a.q_proj, cfg.num_attention_heads), one(a.k_proj, cfg.num_key_value_heads), one(a.v_proj),
                    one(a.o_proj), one(mlp.gate_proj), one(mlp.up_proj), one(mlp.down_proj),
                    layer.input_layernorm, layer.post_attention_layernorm))
    return out


def lean_forward(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 position_ids: torch.Tensor, cache: KVCache | None = None, logits_to_keep: int = 0,
                 weights: list[tuple] | None = None, segments: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (B, T or logits_to_keep, V) of a Llama / Qwen2 model (``lean_supported``) in plain torch over its
    own weights: the Hugging Face forward without its per-call machinery (mask builders,
    cache objects, output records), which dominates one decoding step of a small model.

    ``attention_mask`` (B, K) covers the cached keys and these T tokens; ``cache`` (if given) receives
    this call's keys / values; ``weights`` is ``lean_weights(model)`` (built here if None).
    ``segments`` (B, T), for rows that pack several sequences (no cache): a token attends only to earlier
    tokens with the same segment id, so each sequence gets the numbers of its own forward pass when its
    ``position_ids`` restart at 0. Gradients flow as through the Hugging Face forward.
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
                       logits_to_keep, weights)


def additive_mask(model: PreTrainedModel, allowed: torch.Tensor) -> torch.Tensor:
    """The attention mask ``lean_layers`` adds to the scores: 0 where ``allowed``, -inf elsewhere, in the
    model's dtype."""
    return torch.zeros(allowed.shape, dtype=model.model.embed_tokens.weight.dtype,
                       device=allowed.device).masked_fill_(~allowed, float("-inf"))


def lean_layers(model: PreTrainedModel, input_ids: torch.Tensor, rot: torch.Tensor,
                bias: torch.Tensor | None = None, cache: KVCache | None = None,
                logits_to_keep: int | torch.Tensor = 0, weights: list[tuple] | None = None,
                attend: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
    """``lean_forward`` given its RoPE rotations ``rope(model, position_ids)`` and additive attention mask
    ``bias`` (B, 1, T, K), without input checks: a decoding loop builds both once and slices them per step.
    ``attend(q, k, v, scale)`` (all (B, H, T, d)), if given, computes the attention instead (``PromptTree``);
    ``logits_to_keep`` is a count of last positions (0: all) or a 1-D tensor of positions, as in transformers."""
    m, cfg, (b, t) = model.model, model.config, input_ids.shape
    n_q, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    d = 2 * rot.shape[-1]
    x = F.embedding(input_ids, m.embed_tokens.weight, m.embed_tokens.padding_idx)
    weights = weights or lean_weights(model)
    for i, (w_q, w_k, w_v, w_o, w_gate, w_up, w_down, ln1, ln2) in enumerate(weights):
        h = _rms_norm(x, ln1.weight, ln1.variance_epsilon)
        q = _rotate(F.linear(h, *w_q).view(b, t, n_q, d).transpose(1, 2), rot)
        k = _rotate(F.linear(h, *w_k).view(b, t, n_kv, d).transpose(1, 2), rot)
        v = F.linear(h, *w_v).view(b, t, n_kv, d).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(i, k, v)
        if n_kv != n_q:
            k, v = k.repeat_interleave(n_q // n_kv, 1), v.repeat_interleave(n_q // n_kv, 1)
        if attend is not None:
            o = attend(q, k, v, d ** -0.5)
        elif t == 1:  # decoding, one query per row: eager attention is the cheapest call
            o = torch.softmax(q @ k.transpose(2, 3) * d ** -0.5 + bias, -1, dtype=torch.float32).to(q.dtype) @ v
        else:  # SDPA's fused kernels: no (T, K) score matrix kept for long prompts on GPUs
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=d ** -0.5)
        x = x + F.linear(o.transpose(1, 2).reshape(b, t, n_q * d), *w_o)
        h = _rms_norm(x, ln2.weight, ln2.variance_epsilon)
        x = x + F.linear(F.silu(F.linear(h, *w_gate)) * F.linear(h, *w_up), *w_down)
    if cache is not None:
        cache.length += t
    if isinstance(logits_to_keep, torch.Tensor):
        x = x[:, logits_to_keep]
    elif logits_to_keep:
        x = x[:, -logits_to_keep:]
    x = _rms_norm(x, m.norm.weight, m.norm.variance_epsilon)
    return F.linear(x, model.lm_head.weight, model.lm_head.bias)


def shared_prompt_logprobs(model: PreTrainedModel, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                           completion_ids: torch.Tensor, completion_mask: torch.Tensor, temperature: float = 1.0,
                           ) -> torch.Tensor:
    """Per-token log-probs of n completions per prompt, the prompt run once: (B n, C), 0 off the mask.

    Rows i n .. i n + n - 1 of the completions continue prompt i (left padded, (B, P)); completions are right
    padded. The numbers equal ``completion_logprobs`` on the prompt repeated n times (DPO's chosen / rejected
    pairs and GRPO's groups of G completions per prompt fit this shape), and gradients flow through the
    prompt's one pass. Llama / Qwen2 models run one ``lean_layers`` call over the tokens of a ``PromptTree``;
    others run the prompt through their own forward, repeat its ``DynamicCache`` n times, then the completions.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = completion_ids.shape[0] // prompt_ids.shape[0]
    if n * prompt_ids.shape[0] != completion_ids.shape[0]:
        raise ValueError(f"{completion_ids.shape[0]} completions do not split evenly over "
                         f"{prompt_ids.shape[0]} prompts")
    if lean_supported(model):
        tree = PromptTree(model, prompt_ids, prompt_mask, completion_ids, completion_mask)
        logits = lean_layers(model, tree.ids, rope(model, tree.positions), attend=tree.attend,
                             logits_to_keep=tree.read)[0]
        logp = torch.log_softmax(logits.float() / temperature, dim=-1)[tree.before, completion_ids]
        return logp * completion_mask
    cache = DynamicCache(config=model.config)
    first = model(input_ids=prompt_ids, attention_mask=prompt_mask,
                  position_ids=(prompt_mask.cumsum(1) - 1).clamp(min=0), past_key_values=cache, use_cache=True,
                  logits_to_keep=1).logits
    cache.batch_repeat_interleave(n)
    mask = torch.cat([prompt_mask.repeat_interleave(n, 0), completion_mask], 1)
    positions = prompt_mask.sum(1, keepdim=True).repeat_interleave(n, 0) + torch.arange(
        completion_ids.shape[1], device=mask.device)
    rest = model(input_ids=completion_ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                 use_cache=True).logits[:, :-1]
    logits = torch.cat([first.repeat_interleave(n, 0), rest], 1)
    logp = torch.log_softmax(logits.float() / temperature, dim=-1).gather(-1, completion_ids.unsqueeze(-1))
    return logp.squeeze(-1) * completion_mask


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
        self.positions = torch.cat([(prompt_mask.cumsum(1) - 1).clamp(min=0).reshape(-1),
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

        o = F.scaled_dot_product_attention(prompts(q), prompts(k), prompts(v),
                                           attn_mask=self.prompt_bias, scale=scale)
        o = [o.transpose(1, 2).reshape(bp, h * d)]
        if self.w:
            o_c = F.scaled_dot_product_attention(blocks(q, self.queries), blocks(k, self.keys), blocks(v, self.keys),
                                                 attn_mask=self.completion_bias, scale=scale)
            o.append(o_c.transpose(1, 2).reshape(-1, h * d).index_select(0, self.scatter))
        return torch.cat(o).unflatten(1, (h, d)).transpose(0, 1)[None]
