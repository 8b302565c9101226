"""The policy: any Hugging Face causal LM from a local directory, or the built-in tiny model.

Usage::

    from bellman.llm.model import load_model, encode_prompts, encode_completions, completion_logprobs
    model, tok = load_model("tiny", seed=0)             # or load_model("/path/to/qwen", lora=LoraSpec())
    p_ids, p_mask = encode_prompts(tok, ["1+2=", "10+20="])          # left padded
    c_ids, c_mask = encode_completions(tok, ["3", "30"])              # right padded, EOS appended
    logp = completion_logprobs(model, p_ids, p_mask, c_ids, c_mask)   # (B, C), zero off the completion

Sequences are ``prompt (left padded) + completion (right padded)``; only completion tokens carry loss,
log-probs and KL (ALGORITHMS.md section 12). Position ids are computed from the attention mask, so a
left-padded batch gives the same log-probs as one unpadded forward pass per row.

The built-in tiny model is a small Llama config from transformers (``LlamaForCausalLM``) with a
character-level tokenizer built in code with ``tokenizers`` and wrapped as ``PreTrainedTokenizerFast``,
so ``save_pretrained`` / ``from_pretrained`` round-trip like any hub model. No hub download ever.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, PreTrainedModel, PreTrainedTokenizerFast

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
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    return _pad(ids, tok.pad_token_id, left=True)


def encode_completions(tok: PreTrainedTokenizerFast, completions: list[str], eos: bool = True,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and completion mask of completions, right padded, EOS appended if ``eos``: (B, C) each."""
    if not completions or not all(isinstance(c, str) for c in completions):
        raise ValueError("completions must be a non-empty list of strings")
    ids = [tok(c, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if eos else []) for c in completions]
    return _pad(ids, tok.pad_token_id, left=False)


def _pad(ids: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max(len(x) for x in ids))
    out = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        if x:
            sl = slice(width - len(x), width) if left else slice(0, len(x))
            out[i, sl], mask[i, sl] = torch.tensor(x), 1
    return out, mask


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
