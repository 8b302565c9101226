"""bellman: reinforcement learning from the Bellman equation to LLM post-training.

``bellman.envs`` and ``bellman.TabularMDP`` are loaded on first use (PEP 562), so that importing the
package (and the ``bellman`` command) does not load gymnasium or scipy.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"
__all__ = ["TabularMDP", "envs", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "envs":
        return import_module("bellman.envs")
    if name == "TabularMDP":
        return import_module("bellman.mdp").TabularMDP
    raise AttributeError(f"module 'bellman' has no attribute {name!r}")
