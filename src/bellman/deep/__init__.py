"""Deep RL on Gymnasium tasks: one file per algorithm plus a small shared core (agent, nets, buffers,
rollout, targets, logger, checkpoint; returns and losses in `bellman.core`). Needs the `[deep]` extra
(torch).

`from bellman.deep import PPO` works as usual; each name is imported from its module on first use
(PEP 562), so `import bellman.deep` (and the `bellman` command) does not load torch. To export a name,
add one line `"Name": "bellman.deep.module",` below. `algorithm(name)` is the agent class of a command-line
name (`bellman train ppo`); an algorithm joins the command line with one line in ALGORITHMS.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Agent": "bellman.deep.agent",
    "AgentConfig": "bellman.deep.agent",
    "NonFiniteError": "bellman.deep.agent",
    "make_vec_env": "bellman.deep.agent",
    "ReplayBuffer": "bellman.deep.buffers",
    "RolloutBuffer": "bellman.deep.buffers",
    "REINFORCE": "bellman.deep.reinforce",
    "REINFORCEConfig": "bellman.deep.reinforce",
    "A2C": "bellman.deep.a2c",
    "A2CConfig": "bellman.deep.a2c",
    "TRPO": "bellman.deep.trpo",
    "TRPOConfig": "bellman.deep.trpo",
    "PPO": "bellman.deep.ppo",
    "PPOConfig": "bellman.deep.ppo",
    "DQN": "bellman.deep.dqn",
    "DQNConfig": "bellman.deep.dqn",
    "DDPG": "bellman.deep.ddpg",
    "DDPGConfig": "bellman.deep.ddpg",
    "TD3": "bellman.deep.td3",
    "TD3Config": "bellman.deep.td3",
    "SAC": "bellman.deep.sac",
    "SACConfig": "bellman.deep.sac",
    "QAC": "bellman.deep.qac",
    "QACConfig": "bellman.deep.qac",
    "OffPolicyAC": "bellman.deep.off_policy_ac",
    "OffPolicyACConfig": "bellman.deep.off_policy_ac",
    "LinearQ": "bellman.deep.linear",
    "LinearQConfig": "bellman.deep.linear",
    "td_linear": "bellman.deep.linear",
    "td_fixed_point": "bellman.deep.linear",
}

ALGORITHMS: dict[str, str] = {
    "reinforce": "bellman.deep.reinforce:REINFORCE",
    "a2c": "bellman.deep.a2c:A2C",
    "trpo": "bellman.deep.trpo:TRPO",
    "ppo": "bellman.deep.ppo:PPO",
    "dqn": "bellman.deep.dqn:DQN",
    "ddpg": "bellman.deep.ddpg:DDPG",
    "td3": "bellman.deep.td3:TD3",
    "sac": "bellman.deep.sac:SAC",
    "qac": "bellman.deep.qac:QAC",
    "off-policy-ac": "bellman.deep.off_policy_ac:OffPolicyAC",
}

__all__ = [*_EXPORTS, "ALGORITHMS", "algorithm"]


def algorithm(name: str) -> Any:
    """The agent class registered under the command-line name `name`."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; allowed: {', '.join(sorted(ALGORITHMS))}")
    module, _, cls = ALGORITHMS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bellman.deep' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
