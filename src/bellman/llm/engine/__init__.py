"""Engines: how a policy's completions are sampled and scored.

Usage::

    from bellman.llm.engine import get_engine
    engine = get_engine(model, tok)                  # "auto": LeanEngine where it applies, else HFEngine
    ro = engine.generate(prompts, SamplingConfig(temperature=1.0, max_new_tokens=64), seed=0)
    logp = engine.logprobs(ro.prompt_ids, ro.prompt_mask, ro.completion_ids, ro.completion_mask)

Every trainer samples and scores through its ``Trainer.engine``. ``Engine`` (``base.py``) is the whole
interface: ``generate(prompts, sampling, seed) -> Rollout`` and ``logprobs(prompt_ids, prompt_mask,
completion_ids, completion_mask, temperature, shared_prompt=..., grad=...)``. ``HFEngine`` (``hf.py``) runs
any causal LM through its own forward and KV cache; ``LeanEngine`` (``lean.py``) runs Llama / Qwen2 models
through a hand-written forward with the same numbers, falling back to ``HFEngine`` where it does not apply.

Another backend is one new file here implementing ``Engine`` (and a name in ``get_engine``): vLLM on a GPU
(Kwon et al. 2023, "PagedAttention", arXiv:2309.06180: ``vllm.LLM`` over the directory the trainer writes
with ``save_pretrained``, ``SamplingParams(n=G, temperature=T, top_p=p, top_k=k, max_tokens=N)``, log-probs
recomputed by the training model), a speculative decoder (Leviathan et al. 2023, arXiv:2211.17192), or a
remote worker holding a copy of the policy (e.g. a Ray actor: Moritz et al. 2018, arXiv:1712.05889).
"""

from __future__ import annotations

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bellman.llm.engine.base import Engine
from bellman.llm.engine.hf import HFEngine
from bellman.llm.engine.lean import LeanEngine, lean_supported
from bellman.llm.rollout import Rollout, SamplingConfig

ENGINES = ("auto", "hf", "lean")

__all__ = ["ENGINES", "Engine", "HFEngine", "LeanEngine", "generate", "get_engine"]


def get_engine(model: PreTrainedModel, tok: PreTrainedTokenizerBase, kind: str = "auto") -> Engine:
    """The engine ``kind`` over ``model``: "hf", "lean" (Llama / Qwen2 models that ``lean_supported`` accepts),
    or "auto": lean where supported, else hf."""
    if kind not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {kind!r}")
    if kind == "lean" and not lean_supported(model):
        raise ValueError(f"the lean engine runs plain Llama / Qwen2 models without peft wrappers or gradient "
                         f"checkpointing, got {type(model).__name__}; use engine 'hf' or 'auto'")
    if kind == "lean" or kind == "auto" and lean_supported(model):
        return LeanEngine(model, tok)
    return HFEngine(model, tok)


def generate(model: PreTrainedModel, tok: PreTrainedTokenizerBase, prompts: list[str],
             sampling: SamplingConfig | None = None, seed: int | None = None) -> Rollout:
    """``get_engine(model, tok).generate(prompts, sampling, seed)``: one rollout without keeping an engine."""
    return get_engine(model, tok).generate(prompts, sampling, seed)
