"""LLM post-training of causal LMs: policy, rollouts, tasks & rewards, SFT, GRPO, R1-Zero, reward model,
PPO (RLHF), DPO.

SFT, the Bradley-Terry reward model and PPO-RLHF: Ouyang et al. 2022, arXiv:2203.02155; GRPO: Shao et al.
2024, arXiv:2402.03300; R1-Zero: DeepSeek-AI 2025, arXiv:2501.12948; DPO: Rafailov et al. 2023,
arXiv:2305.18290.

Exports are loaded on first use (PEP 562), so ``bellman --help`` and the CLI do not import torch or
transformers until a command runs. One line per export: name -> module.
"""

from importlib import import_module

_EXPORTS = {
    "LoraSpec": "bellman.llm.model",
    "load_model": "bellman.llm.model",
    "apply_rope_scaling": "bellman.llm.rope",
    "completion_logprobs": "bellman.llm.logprobs",
    "Rollout": "bellman.llm.rollout",
    "SamplingConfig": "bellman.llm.config",
    "Engine": "bellman.llm.engine",
    "HFEngine": "bellman.llm.engine",
    "LeanEngine": "bellman.llm.engine",
    "generate": "bellman.llm.engine",
    "get_engine": "bellman.llm.engine",
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
