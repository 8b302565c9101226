"""Rotary position embeddings past the trained length, without retraining: the scalings and log-n attention.

RoPE (Su et al. 2021, "RoFormer", arXiv:2104.09864) turns the pair j of a head's d dimensions at position m
by the angle m theta_j, theta_j = b^(-2j/d) (base b = ``rope_theta``). A model trained on L positions has
never seen the angles of positions past L; each scaling maps them back into the trained range:

- ``linear``, position interpolation (Chen et al. 2023, arXiv:2306.15595): m -> m / s, every frequency
  divided by the factor s.
- ``ntk``, NTK-aware scaling (bloc97 2023; described in Peng et al. 2023, "YaRN", arXiv:2309.00071,
  sec. 3.1): a larger base b' = b s^(d / (d - 2)), so the highest frequency is kept and the lowest is
  interpolated by s. It is a change of ``rope_theta`` with plain RoPE, which is how it is stored.
- ``dynamic-ntk`` (emozilla 2023; YaRN sec. 3.3): NTK scaling whose factor follows the current length n,
  b' = b (s n / L - s + 1)^(d / (d - 2)) for n > L, plain RoPE up to L.
- ``yarn`` (YaRN sec. 3.4): interpolation per frequency band (none for wavelengths short against L, full
  below, a linear ramp between: "NTK-by-parts") and an attention temperature sqrt(1/t) = 0.1 ln s + 1.

transformers implements ``linear``, ``dynamic`` and ``yarn`` (``transformers.modeling_rope_utils``, used by
every RoPE model's rotary embedding); ``rope_parameters`` writes their config entries and
``apply_rope_scaling`` sets one on a built or loaded model. Log-n scaling (Chiang & Cholak 2022,
"Overcoming a Theoretical Limitation of Self-Attention", arXiv:2202.12172, sec. 5; Su 2021, "Entropy
invariance and the scale of attention", kexue.fm/archives/8823) multiplies the query at position m by
max(1, log_L(m + 1)), so the attention entropy does not grow with the number of keys; the built-in model
implements it (``bellman.llm.nn``).
"""

from __future__ import annotations

import math

import torch
from transformers import PreTrainedModel

ROPE_SCALINGS = ("none", "linear", "ntk", "dynamic-ntk", "yarn")


def check_rope_scaling(scaling: str, factor: float) -> None:
    """A clear error for an unknown scaling or a factor below 1 (scalings stretch, never shrink, the range)."""
    if scaling not in ROPE_SCALINGS:
        raise ValueError(f"rope_scaling must be one of {ROPE_SCALINGS}, got {scaling!r}")
    if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not factor >= 1:
        raise ValueError(f"the rope scaling factor must be a number >= 1 (the new length over the trained one), "
                         f"got {factor!r}")


def rope_parameters(scaling: str, factor: float, *, rope_theta: float, head_dim: int, length: int) -> dict:
    """transformers' ``rope_parameters`` entry of a scaling by ``factor`` of plain RoPE with base ``rope_theta``
    over heads of ``head_dim`` dimensions trained on ``length`` positions."""
    check_rope_scaling(scaling, factor)
    s, d = float(factor), head_dim
    if scaling == "none":
        return {"rope_type": "default", "rope_theta": rope_theta}
    if scaling == "ntk":  # b' = b s^(d / (d - 2))
        return {"rope_type": "default", "rope_theta": rope_theta * s ** (d / (d - 2))}
    if scaling == "linear":
        return {"rope_type": "linear", "factor": s, "rope_theta": rope_theta}
    if scaling == "dynamic-ntk":
        return {"rope_type": "dynamic", "factor": s, "rope_theta": rope_theta}
    return {"rope_type": "yarn", "factor": s, "original_max_position_embeddings": length, "rope_theta": rope_theta}


def logn_factor(position_ids: torch.Tensor, length: int) -> torch.Tensor:
    """max(1, log(m + 1) / log(L)) at positions m (float32, the shape of ``position_ids``): the query scale of
    log-n attention for a model trained on ``length`` = L positions (1 up to position L - 1)."""
    if length < 2:
        raise ValueError(f"log-n scaling needs a trained length >= 2, got {length}")
    return (torch.log1p(position_ids.float()) / math.log(length)).clamp(min=1.0)


def _unwrap(model: PreTrainedModel) -> PreTrainedModel:
    """The transformers model under a peft wrapper (its ``base_model.model``), else the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def apply_rope_scaling(model: PreTrainedModel, scaling: str, factor: float = 1.0, *, logn: bool = False,
                       ) -> PreTrainedModel:
    """Extend a RoPE model's context at inference, without training: write the scaling into its config and
    rebuild its rotary embeddings from it. Returns the model to use (the same one, except below).

    The model's RoPE must be plain (``rope_type`` "default"): scalings start from the trained frequencies.
    The trained length L is ``max_position_embeddings``, which is left as it is. ``logn`` also scales the
    queries by max(1, log_L(m + 1)); the built-in model (``bellman.llm.nn``) has the switch, and a Llama
    model is returned as one with the same weights (``nn.from_llama``).
    """
    check_rope_scaling(scaling, factor)
    inner = _unwrap(model)
    cfg = inner.config
    params = getattr(cfg, "rope_parameters", None)
    if not isinstance(params, dict) or "rope_theta" not in params:
        raise ValueError(f"{type(inner).__name__} has no RoPE parameters (config.rope_parameters) to scale")
    if params.get("rope_type", "default") != "default":
        raise ValueError(f"the model's RoPE is already scaled (rope_type {params['rope_type']!r}); "
                         "apply_rope_scaling starts from plain RoPE")
    rotary = [(name, m) for name, m in inner.named_modules() if hasattr(m, "original_inv_freq")]
    if not rotary:
        raise ValueError(f"{type(inner).__name__} has no rotary embedding module to rebuild")
    if logn:
        from bellman.llm import nn
        if not isinstance(inner, nn.BellmanForCausalLM):
            if inner is not model:
                raise ValueError("log-n scaling of a peft-wrapped Llama: merge the adapters first "
                                 "(merge_and_unload) so it can be rebuilt as the built-in model")
            model = inner = nn.from_llama(inner)
            cfg, rotary = inner.config, [(n, m) for n, m in inner.named_modules() if hasattr(m, "original_inv_freq")]
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    cfg.rope_parameters = {**{k: v for k, v in params.items() if k != "rope_type"},
                           **rope_parameters(scaling, factor, rope_theta=params["rope_theta"], head_dim=head_dim,
                                             length=cfg.max_position_embeddings)}
    if logn:
        cfg.logn_scaling = True
    for name, old in rotary:
        parent, _, attr = name.rpartition(".")
        new = type(old)(config=old.config).to(old.inv_freq.device)
        setattr(inner.get_submodule(parent) if parent else inner, attr, new)
    return model
