"""The built-in policy's transformer with its parts as switches, registered with transformers' Auto classes.

Usage::

    from bellman.llm.model import tiny_model
    from bellman.llm.nn import ModelParts
    model, tok = tiny_model(parts=ModelParts(activation="gelu", attention="linear", feature_map="elu"))
    model.save_pretrained("runs/m")   # AutoModelForCausalLM.from_pretrained("runs/m") once this module is imported

The switches (``ModelParts``; ``policy_config`` turns them and a size into a model config):

- ``activation``: relu, gelu or silu in the MLP down(act(up x)), or the gated swiglu, geglu:
  down(act(gate x) * up x) (Shazeer 2020, "GLU Variants Improve Transformer", arXiv:2002.05202). ReLU:
  Nair & Hinton 2010; GELU: Hendrycks & Gimpel 2016, arXiv:1606.08415; SiLU / Swish: Ramachandran et al.
  2017, arXiv:1710.05941.
- ``bias``: biases on the q, k, v, o and MLP projections (Llama has none).
- ``attention``: softmax(q k^T / sqrt(d)) v (Vaswani et al. 2017, arXiv:1706.03762, sec. 3.2.1), or
  linear attention (``bellman.llm.linear_attention``) with ``feature_map`` (elu, performer, cosformer) and
  ``linear_norm`` ("sum": its denominator; "rms": TransNormer's RMSNorm of the output instead).
- ``rope_scaling`` (none, linear, ntk, dynamic-ntk, yarn) by ``rope_factor``, and ``logn_scaling``:
  ``bellman.llm.rope``.

Where Llama has the switch (its MLP is gated: hidden_act silu = swiglu, gelu = geglu; attention_bias,
mlp_bias; rope_parameters), ``policy_config`` gives a ``LlamaConfig``, so the model is transformers' own
Llama (which the lean engine runs). Otherwise it gives a ``BellmanConfig``, a LlamaConfig with the other
switches, for ``BellmanForCausalLM``: the model below, after nanoGPT (Karpathy 2022), with Llama's module
names and its RMSNorm and rotary embedding, so a Llama's weights load into it unchanged (``from_llama``)
and, with Llama's switches, it computes what Llama does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import (AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification,
                          LlamaConfig, PreTrainedModel)
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, LinearAttentionLayer
from transformers.generation import GenerationMixin
from transformers.modeling_layers import GenericForSequenceClassification, GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import slice_logits_to_keep
from transformers.models.llama.modeling_llama import LlamaRMSNorm, LlamaRotaryEmbedding, apply_rotary_pos_emb

from bellman.llm import linear_attention as la
from bellman.llm.rope import check_rope_scaling, logn_factor, rope_parameters

ACTIVATIONS = {"relu": ("relu", False), "gelu": ("gelu", False), "silu": ("silu", False),
               "swiglu": ("silu", True), "geglu": ("gelu", True)}  # name -> (hidden_act, gated MLP)
ATTENTIONS = ("softmax", "linear")
LINEAR_NORMS = ("sum", "rms")


def check_switches(activation: str = "swiglu", bias: bool = False, attention: str = "softmax",
                   feature_map: str = "elu", linear_norm: str = "sum", rope_scaling: str = "none",
                   rope_factor: float = 1.0, logn_scaling: bool = False) -> None:
    """A clear error for an unknown switch value or a combination the model cannot honour."""
    for name, value, allowed in (("activation", activation, tuple(ACTIVATIONS)), ("attention", attention, ATTENTIONS),
                                 ("feature_map", feature_map, la.FEATURE_MAPS),
                                 ("linear_norm", linear_norm, LINEAR_NORMS)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    check_rope_scaling(rope_scaling, rope_factor)
    if rope_scaling == "none" and rope_factor != 1:
        raise ValueError(f"rope_factor {rope_factor} needs a rope_scaling (one of linear, ntk, dynamic-ntk, yarn)")
    if attention == "softmax" and (feature_map, linear_norm) != ("elu", "sum"):
        raise ValueError("feature_map and linear_norm are settings of linear attention; set attention='linear'")
    if attention == "linear" and logn_scaling:
        raise ValueError("logn_scaling sharpens softmax attention; linear attention has no softmax to sharpen")
    if attention == "linear" and feature_map == "cosformer" and rope_scaling != "none":
        raise ValueError("cosFormer attention has no RoPE to scale (its cos re-weighting places the tokens); "
                         "use rope_scaling='none' or feature_map 'elu' / 'performer'")


@dataclass
class ModelParts:
    """The built-in model's switches (values in the module docstring); the defaults are Llama's parts."""

    activation: str = "swiglu"
    bias: bool = False
    attention: str = "softmax"
    feature_map: str = "elu"
    linear_norm: str = "sum"
    rope_scaling: str = "none"
    rope_factor: float = 1.0
    logn_scaling: bool = False

    def __post_init__(self) -> None:
        check_switches(**dataclasses.asdict(self))


@strict
class BellmanConfig(LlamaConfig):
    """A ``LlamaConfig`` with the switches Llama lacks: a plain (ungated) MLP, linear attention, log-n."""

    model_type = "bellman"
    gated_mlp: bool = True
    attention: str = "softmax"
    feature_map: str = "elu"
    linear_norm: str = "sum"
    logn_scaling: bool = False
    layer_types: list[str] | None = None

    def __post_init__(self, **kwargs):
        if self.layer_types is None:  # linear attention layers keep a recurrent state, not keys and values
            kind = "linear_attention" if self.attention == "linear" else "full_attention"
            self.layer_types = [kind] * self.num_hidden_layers
        super().__post_init__(**kwargs)

    def validate_switches(self):
        """Part of the strict dataclass's validation: the switches' values and combinations."""
        rope_type = (self.rope_parameters or {}).get("rope_type", "default")
        check_switches(attention=self.attention, feature_map=self.feature_map, linear_norm=self.linear_norm,
                       logn_scaling=self.logn_scaling,
                       rope_scaling="none" if rope_type == "default" else "linear", rope_factor=1.0)
        if self.hidden_act not in ACT2FN:
            raise ValueError(f"hidden_act must be one of transformers' ACT2FN, got {self.hidden_act!r}")
        if self.attention == "linear" and self.attention_dropout:
            raise ValueError("attention_dropout drops softmax attention weights; linear attention has none to drop")


def policy_config(parts: ModelParts | None = None, **llama) -> LlamaConfig:
    """The config of a model with these parts and the ``LlamaConfig`` fields ``llama`` (its size, token ids):
    a ``LlamaConfig`` where Llama has every part, else a ``BellmanConfig``."""
    p = parts or ModelParts()
    if not isinstance(p, ModelParts):
        raise TypeError(f"parts must be a ModelParts or None, got {type(p).__name__}")
    hidden_act, gated = ACTIVATIONS[p.activation]
    kw = dict(llama, hidden_act=hidden_act, attention_bias=p.bias, mlp_bias=p.bias)
    if p.rope_scaling != "none":
        kw["rope_parameters"] = rope_parameters(
            p.rope_scaling, p.rope_factor, rope_theta=llama.get("rope_theta", LlamaConfig.default_theta),
            head_dim=kw["hidden_size"] // kw["num_attention_heads"], length=kw["max_position_embeddings"])
    if gated and p.attention == "softmax" and not p.logn_scaling:
        return LlamaConfig(**kw)
    return BellmanConfig(**kw, gated_mlp=gated, attention=p.attention, feature_map=p.feature_map,
                         linear_norm=p.linear_norm, logn_scaling=p.logn_scaling)


class LinearAttentionState(LinearAttentionLayer):
    """One linear attention layer's cache: its state (S, z) as transformers' recurrent-state layer holds it,
    replaced rather than copied into (so autograd may keep the old one), with the batch repeats and
    selections a shared prompt's completions need, and the count of tokens seen."""

    def __init__(self) -> None:
        super().__init__(number_of_states=2)
        self.seen = 0

    def update_recurrent_state(self, recurrent_states: torch.Tensor, state_idx: int = 0, **kwargs) -> torch.Tensor:
        self.recurrent_states[state_idx] = recurrent_states
        self.is_recurrent_states_initialized[state_idx] = True
        return recurrent_states

    def batch_repeat_interleave(self, repeats: int) -> None:
        for i, s in self.recurrent_states.items():
            if s is not None:
                self.recurrent_states[i] = s.repeat_interleave(repeats, 0)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        for i, s in self.recurrent_states.items():
            if s is not None:
                self.recurrent_states[i] = s[indices]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx)


class MLP(nn.Module):
    """down(act(gate x) * up x) when gated (SwiGLU / GeGLU), else down(act(up x))."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        h, i, bias = config.hidden_size, config.intermediate_size, config.mlp_bias
        self.gated = getattr(config, "gated_mlp", True)
        if self.gated:
            self.gate_proj = nn.Linear(h, i, bias=bias)
        self.up_proj = nn.Linear(h, i, bias=bias)
        self.down_proj = nn.Linear(i, h, bias=bias)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act_fn(self.gate_proj(x)) * self.up_proj(x) if self.gated else self.act_fn(self.up_proj(x))
        return self.down_proj(h)


class Attention(nn.Module):
    """Causal self-attention of RoPE-rotated queries and keys: softmax (with log-n query scaling if set) over
    a KV cache, or linear (``bellman.llm.linear_attention``) over a recurrent state."""

    def __init__(self, config: LlamaConfig, layer_idx: int) -> None:
        super().__init__()
        self.config, self.layer_idx = config, layer_idx
        self.d = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.n_q, self.n_kv = config.num_attention_heads, config.num_key_value_heads
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, self.n_q * self.d, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, self.n_kv * self.d, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, self.n_kv * self.d, bias=bias)
        self.o_proj = nn.Linear(self.n_q * self.d, config.hidden_size, bias=bias)
        self.linear = getattr(config, "attention", "softmax") == "linear"
        if self.linear and config.linear_norm == "rms":
            self.out_norm = LlamaRMSNorm(self.n_q * self.d, eps=config.rms_norm_eps)
        performer = self.linear and config.feature_map == "performer"  # FAVOR+ directions, drawn at init
        self.register_buffer("performer_w", torch.empty(self.d, self.d) if performer else None)

    def forward(self, x: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor],
                position_ids: torch.Tensor, mask: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_q, self.d).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.n_kv, self.d).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.n_kv, self.d).transpose(1, 2)
        attend = self._linear if self.linear else self._softmax
        o = attend(q, k, v, position_embeddings, position_ids, mask, cache).transpose(1, 2).reshape(b, t, -1)
        if self.linear and self.config.linear_norm == "rms":
            o = self.out_norm(o)
        return self.o_proj(o)

    def _softmax(self, q, k, v, position_embeddings, position_ids, allowed, cache):
        """softmax(q k^T / sqrt(d)) v over the keys ``allowed`` (B, 1, T, K), q scaled by log-n if set."""
        q, k = apply_rotary_pos_emb(q, k, *position_embeddings)
        if getattr(self.config, "logn_scaling", False):
            q = q * logn_factor(position_ids, self.config.max_position_embeddings)[:, None, :, None].to(q.dtype)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        k, v = k.repeat_interleave(self.n_q // self.n_kv, 1), v.repeat_interleave(self.n_q // self.n_kv, 1)
        dropout = self.config.attention_dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout, scale=self.d ** -0.5)

    def _linear(self, q, k, v, position_embeddings, position_ids, valid, cache):
        """Linear attention of these tokens after the state of the cached ones; ``valid`` (B, T): not padding."""
        c = self.config
        phi_q = la.features(q, c.feature_map, self.performer_w)
        phi_k = la.features(k, c.feature_map, self.performer_w) * valid[:, None, :, None]
        if c.feature_map == "cosformer":
            a_q = b_q = la.cos_reweight(phi_q, position_ids, c.max_position_embeddings)
            a_k = b_k = la.cos_reweight(phi_k, position_ids, c.max_position_embeddings)
        else:  # RoPE on the numerator's features (RoFormer sec. 3.3)
            cos, sin = (e.float() for e in position_embeddings)
            (a_q, a_k), b_q, b_k = apply_rotary_pos_emb(phi_q, phi_k, cos, sin), phi_q, phi_k
        g = self.n_q // self.n_kv
        a_k, b_k, v = a_k.repeat_interleave(g, 1), b_k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
        layer = cache.layers[self.layer_idx] if cache is not None else None
        state = None if layer is None or layer.recurrent_states[0] is None else (
            layer.recurrent_states[0], layer.recurrent_states[1])
        form = la.recurrent if q.shape[2] == 1 and layer is not None else la.chunked
        o, (s, z) = form(a_q, a_k, b_q, b_k, v, state, normalise=c.linear_norm == "sum")
        if layer is not None:
            layer.update_recurrent_state(s, 0)
            layer.update_recurrent_state(z, 1)
            layer.seen += q.shape[2]
        return o.to(v.dtype)


class Block(GradientCheckpointingLayer):
    """x + attention(norm x), then x + mlp(norm x) (pre-norm, RMSNorm: Zhang & Sennrich 2019, arXiv:1910.07467)."""

    def __init__(self, config: LlamaConfig, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = Attention(config, layer_idx)
        self.mlp = MLP(config)
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, x: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor],
                position_ids: torch.Tensor, mask: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), position_embeddings, position_ids, mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class BellmanPreTrainedModel(PreTrainedModel):
    config_class = BellmanConfig
    config: BellmanConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["Block"]
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, Attention) and module.performer_w is not None:
            init.copy_(module.performer_w, la.orthogonal_features(module.d, module.d))


class BellmanModel(BellmanPreTrainedModel):
    """Token embeddings, the blocks, a final RMSNorm: hidden states (B, T, hidden_size)."""

    def __init__(self, config: BellmanConfig) -> None:
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_hidden_layers))
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config=config)
        self.gradient_checkpointing = False
        self.post_init()

    def new_cache(self) -> Cache:
        """An empty cache: a recurrent state per linear attention layer, else keys and values."""
        if self.config.attention == "linear":
            return Cache(layers=[LinearAttentionState() for _ in self.layers])
        return DynamicCache(config=self.config)

    def _adopt(self, cache: Cache) -> None:
        """Linear attention layers keep their state in ``LinearAttentionState``: the empty layers of a cache
        built elsewhere (``DynamicCache(config=...)`` makes transformers' ``LinearAttentionLayer``) are
        replaced by it."""
        for i in range(len(self.layers)):
            layer = cache.layers[i] if i < len(cache.layers) else None
            if isinstance(layer, LinearAttentionState):
                continue
            if layer is not None and any(getattr(layer, "is_recurrent_states_initialized", {}).values()):
                raise ValueError(f"cache layer {i} holds a state this model did not write")
            if layer is None:
                cache.layers.append(LinearAttentionState())
            else:
                cache.layers[i] = LinearAttentionState()

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, cache: Cache | None = None,
                inputs_embeds: torch.Tensor | None = None, use_cache: bool | None = None,
                past_key_values: Cache | None = None, **kwargs) -> BaseModelOutputWithPast:
        """``attention_mask`` (B, cached + T): 1 on tokens, 0 on padding; ``position_ids`` (B, T) default to
        the count of cached tokens onwards. ``past_key_values`` is the older name of ``cache``."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        cache = cache if cache is not None else past_key_values
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if self.gradient_checkpointing and self.training:
            use_cache = False
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        (b, t), linear = x.shape[:2], self.config.attention == "linear"
        if use_cache and cache is None:
            cache = self.new_cache()
        if cache is not None and linear:
            self._adopt(cache)
        past = 0 if cache is None else cache.layers[0].seen if linear else cache.get_seq_length()
        if position_ids is None:
            position_ids = torch.arange(past, past + t, device=x.device)[None].expand(b, -1)
        if attention_mask is None:
            attention_mask = torch.ones(b, past + t, dtype=torch.long, device=x.device)
        if linear:
            mask = attention_mask[:, -t:].to(torch.float32)
        else:  # causal over the cache and these tokens, not padding; a padding query sees itself (unused)
            key = torch.arange(past + t, device=x.device)
            query = key[past:, None]
            mask = ((key <= query) & attention_mask[:, None, None, :].bool()) | (key == query)
        position_embeddings = self.rotary_emb(x, position_ids)
        for layer in self.layers:
            x = layer(x, position_embeddings, position_ids, mask, cache=cache)
        return BaseModelOutputWithPast(last_hidden_state=self.norm(x), cache=cache)


class BellmanForCausalLM(BellmanPreTrainedModel, GenerationMixin):
    """``BellmanModel`` and a language-model head (tied to the embeddings if ``tie_word_embeddings``)."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: BellmanConfig) -> None:
        super().__init__(config)
        self.model = BellmanModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, cache: Cache | None = None,
                inputs_embeds: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                use_cache: bool | None = None, logits_to_keep: int | torch.Tensor = 0,
                past_key_values: Cache | None = None, **kwargs) -> CausalLMOutputWithPast:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         cache=cache if cache is not None else past_key_values, inputs_embeds=inputs_embeds,
                         use_cache=use_cache)
        logits = self.lm_head(slice_logits_to_keep(out.last_hidden_state, logits_to_keep))
        loss = None if labels is None else self.loss_function(logits=logits, labels=labels,
                                                               vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=out.cache)


class BellmanForSequenceClassification(GenericForSequenceClassification, BellmanPreTrainedModel):
    """``BellmanModel`` with a scalar (or ``num_labels``) head, as reward models and critics use."""


def from_llama(model: PreTrainedModel, **switches) -> BellmanForCausalLM:
    """A ``LlamaForCausalLM`` as a ``BellmanForCausalLM`` with the same weights (and ``BellmanConfig`` fields
    ``switches``, e.g. ``logn_scaling=True``): same numbers until a switch changes them."""
    if type(model).__name__ != "LlamaForCausalLM":
        raise ValueError(f"from_llama takes a LlamaForCausalLM, got {type(model).__name__}")
    fields = {k: v for k, v in model.config.to_dict().items()
              if k not in ("model_type", "architectures", "transformers_version", "dtype")}
    param = next(model.parameters())
    out = BellmanForCausalLM(BellmanConfig(**{**fields, **switches}))
    out.load_state_dict(model.state_dict())
    return out.to(device=param.device, dtype=param.dtype).train(model.training)


AutoConfig.register("bellman", BellmanConfig, exist_ok=True)
AutoModel.register(BellmanConfig, BellmanModel, exist_ok=True)
AutoModelForCausalLM.register(BellmanConfig, BellmanForCausalLM, exist_ok=True)
AutoModelForSequenceClassification.register(BellmanConfig, BellmanForSequenceClassification, exist_ok=True)
