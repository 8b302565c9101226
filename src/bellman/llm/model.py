"""The policy: any Hugging Face causal LM from a local directory, or the built-in tiny model.

Usage::

    from bellman.llm.model import LoraSpec, load_model
    model, tok = load_model("tiny", seed=0)             # or load_model("/path/to/qwen", lora=LoraSpec())

The built-in tiny model is a small Llama (Touvron et al. 2023, "LLaMA", arXiv:2302.13971) built from a
transformers ``LlamaConfig`` with the character tokenizer of ``bellman.llm.tokenizer``, so
``save_pretrained`` / ``from_pretrained`` round-trip like any hub model. Its parts are switches
(``bellman.llm.nn.ModelParts``; with one Llama lacks it is a ``BellmanForCausalLM``, registered with
transformers' Auto classes when this module is imported). No hub download ever. ``lora`` wraps a model in
peft LoRA adapters (Hu et al. 2021, "LoRA", arXiv:2106.09685).
"""

from __future__ import annotations

import pickle

from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerFast

from bellman.llm.nn import ModelParts, policy_config  # also registers the built-in model's classes
from bellman.llm.tokenizer import char_tokenizer


@dataclass
class TinyConfig:
    """Size of the built-in tiny Llama (about 0.8M parameters with the defaults)."""

    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    max_position_embeddings: int = 256


def tiny_model(config: TinyConfig | None = None, seed: int = 0, parts: ModelParts | None = None,
               ) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """The built-in tiny causal LM with ``parts`` (default: Llama's) and its character tokenizer, seeded: a
    ``LlamaForCausalLM``, or a ``BellmanForCausalLM`` for parts Llama lacks."""
    c = config or TinyConfig()
    tok = char_tokenizer()
    cfg = policy_config(parts, vocab_size=len(tok), hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
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
        try:
            model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        except pickle.UnpicklingError as e:  # transformers reads .bin weights with torch's weights-only unpickler
            first = str(e).strip().splitlines()[-1][:200]
            raise ValueError(f"the weights in {str(path)!r} hold something other than tensors and were refused "
                             f"(nothing in them was run): {first}") from None
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
