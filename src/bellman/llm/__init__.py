"""LLM post-training of causal LMs: policy, rollouts, tasks & rewards, SFT, GRPO, R1-Zero, reward model,
PPO (RLHF), DPO (ALGORITHMS.md section 12).

Exports are loaded on first use (PEP 562), so ``bellman --help`` and the CLI do not import torch or
transformers until a command runs. One line per export: name -> module.
"""

from importlib import import_module

_EXPORTS = {
    "LoraSpec": "bellman.llm.model",
    "completion_logprobs": "bellman.llm.model",
    "load_model": "bellman.llm.model",
    "Rollout": "bellman.llm.rollout",
    "SamplingConfig": "bellman.llm.config",
    "generate": "bellman.llm.rollout",
    "Template": "bellman.llm.tasks",
    "Trainer": "bellman.llm.trainer",
    "TrainerConfig": "bellman.llm.config",
    "evaluate": "bellman.llm.trainer",
    "SFTConfig": "bellman.llm.config",
    "SFTTrainer": "bellman.llm.sft",
    "GRPOConfig": "bellman.llm.config",
    "GRPOTrainer": "bellman.llm.grpo",
    "R1ZeroConfig": "bellman.llm.config",
    "RewardModel": "bellman.llm.reward_model",
    "RewardModelConfig": "bellman.llm.config",
    "RewardModelTrainer": "bellman.llm.reward_model",
    "PPORLHFConfig": "bellman.llm.config",
    "PPORLHFTrainer": "bellman.llm.ppo",
    "DPOConfig": "bellman.llm.config",
    "DPOTrainer": "bellman.llm.dpo",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bellman.llm' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
