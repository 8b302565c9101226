"""Batches of prompts and completions: token ids, masks, position ids, and where completions are read.

Usage::

    from bellman.llm.batching import encode_completions, encode_prompts
    p_ids, p_mask = encode_prompts(tok, ["1+2=", "10+20="])          # left padded
    c_ids, c_mask = encode_completions(tok, ["3", "30"])              # right padded, EOS appended

Sequences are ``prompt (left padded) + completion (right padded)``; only completion tokens carry loss,
log-probs and KL. Position ids follow the attention mask (``position_ids``), so a left-padded batch gives
the same numbers as one unpadded forward pass per row. A causal LM's output at position t predicts token
t + 1, so the C completion tokens of a (B, P + C) sequence are predicted at positions P - 1 .. P + C - 2
(``completion_outputs``).
"""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase


def encode_prompts(tok: PreTrainedTokenizerBase, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask of prompts, left padded: (B, P) each."""
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts must be a non-empty list of strings")
    distinct = list(dict.fromkeys(prompts))  # a prompt repeated for a group is tokenised once
    ids = dict(zip(distinct, tok(distinct, add_special_tokens=False)["input_ids"]))
    return _pad([ids[p] for p in prompts], tok.pad_token_id, left=True)


def encode_completions(tok: PreTrainedTokenizerBase, completions: list[str], eos: bool = True,
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


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Position ids (B, T) of a left-padded batch: 0 at each row's first real token, counting up; 0 on padding."""
    return (mask.cumsum(1) - 1).clamp(min=0)


def completion_outputs(outputs: torch.Tensor, completion_len: int) -> torch.Tensor:
    """The outputs (B, C, ...) of a model at the positions that predict the last ``completion_len`` = C tokens
    of its input: position t predicts token t + 1, so positions P - 1 .. P + C - 2 of a (B, P + C) sequence
    that ends with its completion; the last position (it predicts past the end) is dropped."""
    return outputs[:, -completion_len - 1:-1]
