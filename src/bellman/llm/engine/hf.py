"""HFEngine: decoding and log-probs through the model's own (Hugging Face) forward, for any causal LM.

Decoding keeps the model's KV cache (its ``past_key_values``; without ``use_cache``, a full forward per
new token): each step runs only the new token against the cached keys and values of the earlier ones
(Pope et al. 2022, "Efficiently Scaling Transformer Inference", arXiv:2211.05102, sec. 2). With a shared
prompt, the prompt runs once, its ``DynamicCache`` is repeated for its n completions, and the completions
run against it.
"""

from __future__ import annotations

from dataclasses import fields

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from bellman.llm.batching import encode_prompts, position_ids
from bellman.llm.engine.base import Engine, autograd, check_context, check_decoding_memory, check_logprobs_batch
from bellman.llm.logprobs import completion_logprobs, head_logprobs, plain_head, scatter_logprobs
from bellman.llm.rollout import Rollout, SamplingConfig, decode


class HFEngine(Engine):
    """Every causal LM, through its own forward and KV cache."""

    def __init__(self, model: PreTrainedModel, tok: PreTrainedTokenizerBase) -> None:
        self.model, self.tok = model, tok

    def generate(self, prompts: list[str], sampling: SamplingConfig | None = None, seed: int | None = None,
                 ) -> Rollout:
        """Decodes under ``torch.inference_mode``; the returned tensors are ordinary copies, so a loss may use them."""
        with torch.inference_mode():
            ro = self._decode(prompts, sampling or SamplingConfig(), seed)
        return Rollout(*(getattr(ro, f.name).clone() for f in fields(Rollout)))

    def _start(self, prompts: list[str], seed: int | None, new_tokens: int = 0,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
        """The prompts' ids and mask on the model's device (each prompt and ``new_tokens`` after it within the
        model's context), and the seeded generator of the draws."""
        prompt_ids, prompt_mask = encode_prompts(self.tok, prompts)
        check_context(self.model, int(prompt_mask.sum(1).max()), new_tokens)
        check_decoding_memory(self.model, prompt_ids.shape[0], prompt_ids.shape[1] + new_tokens)
        device = next(self.model.parameters()).device
        g = torch.Generator(device=device)
        g.manual_seed(seed if seed is not None else int(torch.randint(2**31, ())))
        return prompt_ids.to(device), prompt_mask.to(device), g

    def _decode(self, prompts: list[str], s: SamplingConfig, seed: int | None) -> Rollout:
        model = self.model
        prompt_ids, prompt_mask, g = self._start(prompts, seed, s.max_new_tokens)
        (b, p), n = prompt_ids.shape, s.max_new_tokens
        mask = torch.cat([prompt_mask, prompt_mask.new_ones(b, n)], dim=1)  # grows into the completion columns
        pos = position_ids(prompt_mask)
        out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=pos, use_cache=s.use_cache,
                    logits_to_keep=1)
        ids = prompt_ids

        def step(t: int, nxt: torch.Tensor) -> torch.Tensor:
            nonlocal out, ids
            m = mask[:, :p + t + 1]
            if s.use_cache:
                out = model(input_ids=nxt[:, None], attention_mask=m, position_ids=pos[:, -1:] + 1 + t,
                            past_key_values=out.past_key_values, use_cache=True)
                return out.logits
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            return model(input_ids=ids, attention_mask=m, position_ids=position_ids(m), use_cache=False,
                         logits_to_keep=1).logits

        return decode(prompt_ids, prompt_mask, s, g, self.tok.eos_token_id, self.tok.pad_token_id, out.logits, step)

    def logprobs(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                 completion_mask: torch.Tensor, temperature: float = 1.0, *, shared_prompt: bool = False,
                 grad: bool = True) -> torch.Tensor:
        """A shared prompt runs once into a ``DynamicCache`` repeated for its completions, unless the model
        trains with gradient checkpointing (no KV cache then): it is repeated for a plain forward instead."""
        n = check_logprobs_batch(prompt_ids, prompt_mask, completion_ids, completion_mask, temperature, shared_prompt)
        check_context(self.model, int(prompt_mask.sum(1).max()), completion_ids.shape[1])
        with autograd(grad):
            if shared_prompt and not getattr(self.model, "is_activation_checkpointing", False):
                return self._shared_prompt(prompt_ids, prompt_mask, completion_ids, completion_mask, temperature, n)
            if n > 1:
                prompt_ids, prompt_mask = prompt_ids.repeat_interleave(n, 0), prompt_mask.repeat_interleave(n, 0)
            return completion_logprobs(self.model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                                       temperature)

    def _shared_prompt(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                       completion_mask: torch.Tensor, temperature: float, n: int) -> torch.Tensor:
        model, parts = self.model, plain_head(self.model)
        run, head = (model, None) if parts is None else parts
        read = (lambda out: out.logits) if parts is None else (lambda out: out.last_hidden_state)
        keep = {"logits_to_keep": 1} if parts is None else {}
        cache = DynamicCache(config=model.config)
        first = read(run(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=position_ids(prompt_mask),
                         past_key_values=cache, use_cache=True, **keep))[:, -1]
        cache.batch_repeat_interleave(n)
        mask = torch.cat([prompt_mask.repeat_interleave(n, 0), completion_mask], 1)
        (bn, c), device = completion_ids.shape, completion_ids.device
        positions = prompt_mask.sum(1, keepdim=True).repeat_interleave(n, 0) + torch.arange(c, device=device)
        rest = read(run(input_ids=completion_ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                        use_cache=True))
        # the prompt's last output (row i of ``first``) predicts completion token 0; completion token j - 1's
        # output (row B + r C + j - 1 of ``rest`` after ``first``) predicts token j
        b, j = prompt_ids.shape[0], torch.arange(c, device=device)
        row = torch.arange(bn, device=device)[:, None]
        at = torch.where(j == 0, row // n, b + row * c + j - 1)
        m = completion_mask.bool()
        values = head_logprobs([first, rest.reshape(bn * c, -1)], head, at[m], completion_ids[m], temperature)
        return scatter_logprobs(values, completion_mask)
