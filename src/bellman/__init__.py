"""bellman: reinforcement learning from the Bellman equation to LLM post-training."""

from bellman import envs
from bellman.mdp import TabularMDP

__version__ = "0.1.0"
__all__ = ["TabularMDP", "envs", "__version__"]
