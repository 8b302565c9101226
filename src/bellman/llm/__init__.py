"""LLM post-training of causal LMs: policy, rollouts, tasks & rewards, SFT, GRPO, R1-Zero (ALGORITHMS.md s.12).

Modules: model (load_model, tiny model, log-probs), rollout (generate), tasks (rewards), trainer (shared
plumbing), sft, grpo, r1_zero, cli. One import line per export below.
"""

from bellman.llm.model import LoraSpec, completion_logprobs, load_model
from bellman.llm.rollout import Rollout, SamplingConfig, generate
from bellman.llm.trainer import Trainer, TrainerConfig, evaluate
from bellman.llm.sft import SFTConfig, SFTTrainer
from bellman.llm.grpo import GRPOConfig, GRPOTrainer
from bellman.llm.reward_model import RewardModel, RewardModelConfig, RewardModelTrainer
from bellman.llm.ppo import PPOConfig, PPOTrainer
from bellman.llm.dpo import DPOConfig, DPOTrainer
