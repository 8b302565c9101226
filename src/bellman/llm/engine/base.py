"""The interface every generation / scoring backend implements (see the package docstring)."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bellman.llm.rollout import Rollout, SamplingConfig


class Engine(ABC):
    """Samples completions of a policy and scores completions under it.

    ``model`` is the policy being trained (an engine that runs elsewhere takes its weights from it) and
    ``tok`` its tokenizer. Both methods return the numbers of the policy's own forward pass; engines
    differ only in how they compute them.
    """

    model: PreTrainedModel
    tok: PreTrainedTokenizerBase

    @abstractmethod
    def generate(self, prompts: list[str], sampling: SamplingConfig | None = None, seed: int | None = None,
                 ) -> Rollout:
        """One sampled completion per prompt (repeat a prompt for a group), seeded by ``seed`` (None: drawn
        from torch's global generator). The rollout's ``logprobs`` are those of the temperature-scaled
        distribution before top-k / top-p filtering; its tensors carry no autograd history."""

    @abstractmethod
    def logprobs(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                 completion_mask: torch.Tensor, temperature: float = 1.0, *, shared_prompt: bool = False,
                 grad: bool = True) -> torch.Tensor:
        """log pi(c_t | prompt, c_<t) of every completion token under softmax(logits / temperature):
        (B', C), 0 off ``completion_mask``.

        Prompts (B, P) are left padded, completions (B', C) right padded. Without ``shared_prompt`` B' = B,
        one prompt per completion; with it each prompt row i stands for the n = B' / B completions
        i n .. i n + n - 1 (GRPO's groups, DPO's chosen / rejected pairs), with the numbers of the
        prompts repeated n times. ``grad`` False computes without autograd (a reference model's pass);
        True lets gradients flow into the model's parameters.
        """

    def generate_scored(self, prompts: list[str], sampling: SamplingConfig | None = None, seed: int | None = None,
                        score: Callable[[list[str], list[str], list], Any] | None = None, extras: list | None = None,
                        ) -> tuple[Rollout, Any]:
        """``generate``, then ``score(prompts, completions, extras)`` of the decoded completions (None without
        ``score``): where the completions are made, so an engine sampling on other machines
        (``bellman.distributed.RemoteEngine``) scores there too and a slow reward function does not hold up
        the learner. ``extras`` go with the prompts (a task's rows); ``score`` returns a tensor with one row
        per prompt."""
        ro = self.generate(prompts, sampling, seed)
        return ro, None if score is None else score(prompts, ro.completions(self.tok), extras)


def autograd(grad: bool) -> contextlib.AbstractContextManager:
    """The context of a ``logprobs`` pass: as the caller's with ``grad``, else ``torch.inference_mode``."""
    return contextlib.nullcontext() if grad else torch.inference_mode()


def check_decoding_memory(model: PreTrainedModel, batch: int, length: int) -> None:
    """The KV cache of ``batch`` sequences of ``length`` tokens must fit this machine's memory
    (``core.resources``): too many prompts x completions is one clear error, not the kernel's kill."""
    from bellman.core.resources import check_memory

    c = getattr(model, "config", None)
    layers, heads = getattr(c, "num_hidden_layers", None), getattr(c, "num_attention_heads", None)
    if not layers or not heads:
        return
    kv_heads = getattr(c, "num_key_value_heads", None) or heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    itemsize = next(model.parameters()).element_size()
    check_memory(f"the KV cache of {batch:,} sequences of {length:,} tokens",
                 2 * layers * batch * length * kv_heads * head_dim * itemsize,
                 "the number of prompts x completions per batch or max_new_tokens")


def check_context(model: PreTrainedModel, prompt_tokens: int, new_tokens: int) -> None:
    """A prompt of ``prompt_tokens`` tokens and ``new_tokens`` after it must fit the model's context
    (``max_position_embeddings``): positions past it were never trained, and the numbers are not the model's."""
    config = getattr(model, "config", None)
    context = getattr(config, "max_position_embeddings", None)
    if context is None or getattr(config, "logn_scaling", False):
        return  # no stated context, or log-n attention scaling, which exists to run past the trained length
    factor = (getattr(config, "rope_parameters", None) or {}).get("factor") or 1.0
    context = int(context * factor)  # a RoPE scaling stretches the trained length by its factor
    if prompt_tokens + new_tokens > context:
        raise ValueError(f"a prompt of {prompt_tokens} tokens and {new_tokens} tokens after it make "
                         f"{prompt_tokens + new_tokens}, more than the model's context of {context} tokens "
                         "(max_position_embeddings, times a RoPE scaling's factor); shorten the prompt, lower "
                         "max_new_tokens, or extend the context at inference (apply_rope_scaling, --rope-scaling)")


def check_logprobs_batch(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                         completion_mask: torch.Tensor, temperature: float, shared_prompt: bool) -> int:
    """The batch checks every engine's ``logprobs`` makes; returns n, the completions per prompt row."""
    if prompt_ids.shape != prompt_mask.shape or completion_ids.shape != completion_mask.shape:
        raise ValueError("ids and masks must have the same shape")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b, bn = prompt_ids.shape[0], completion_ids.shape[0]
    n = bn // b if shared_prompt else 1
    if n * b != bn or n < 1:
        raise ValueError(f"{bn} completions do not split evenly over {b} prompts" if shared_prompt else
                         f"got {b} prompts for {bn} completions; pass one prompt per completion, or "
                         "shared_prompt=True with one prompt per group of completions")
    return n
