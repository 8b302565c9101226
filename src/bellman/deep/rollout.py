"""Collecting experience: the agent steps its environments, the buffers only store.

collect_rollout: the agent runs its current policy for n_steps vector steps and a RolloutBuffer stores them
("run policy pi_old in environment for T timesteps", Schulman et al. 2017, arXiv:1707.06347, Algorithm 1).
transition_batch: the valid rows of one vector step as tensors, for agents that learn from every step.
stack_steps: several vector steps as one Transition of (T, n_envs, ...) arrays; join_experience: the
experience of several rollout workers as one, their env copies side by side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from bellman.deep.buffers import RolloutBuffer

if TYPE_CHECKING:
    from bellman.deep.agent import Agent, Transition


def collect_rollout(agent: Agent, buffer: RolloutBuffer,
                    act: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                    value: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Fill `buffer` with buffer.n_steps steps of `agent`'s environments: act(s) -> (a ~ pi(.|s), ln pi(a|s),
    v(s)) for every step and value(s) -> v(s) for the state after the last one."""
    with torch.inference_mode():
        for t in range(buffer.n_steps):
            s = agent.encode(agent.obs)
            a, log_p, v = act(s)
            buffer.store_action(t, s.numpy(), a.numpy(), log_p.numpy(), v.numpy())
            buffer.store_outcome(t, agent.env_step(a.numpy()))
        buffer.store_last_value(value(agent.encode(agent.obs)).numpy())


def transition_batch(agent: Agent, step: Transition) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The valid rows of one vector step as tensors: (valid, s', r, terminated as 0/1 floats), the last
    three already restricted to the valid rows (select the caller's s and a with `valid`)."""
    valid = torch.as_tensor(step.valid)
    next_obs = agent.encode(step.next_obs)[valid]
    reward = torch.as_tensor(step.reward, dtype=torch.float32)[valid]
    terminated = torch.as_tensor(step.terminated, dtype=torch.float32)[valid]
    return valid, next_obs, reward, terminated


def stack_steps(steps: list[Transition]) -> Transition:
    """Vector steps t = 0 .. T-1 as one Transition whose fields are (T, n_envs, ...) arrays."""
    return type(steps[0])(*(np.stack(field) for field in zip(*steps)))


def join_experience(parts: list[Any]) -> Any:
    """Several workers' `Agent.sample` results as one, their env copies side by side in worker order: a
    RolloutBuffer (RolloutBuffer.cat) or a tuple of (T, n_envs, ...) arrays (joined on axis 1)."""
    first = parts[0]
    if len(parts) == 1:
        return first
    if isinstance(first, RolloutBuffer):
        return RolloutBuffer.cat(parts)
    if isinstance(first, tuple):
        return type(first)(*(np.concatenate(field, axis=1) for field in zip(*parts)))
    raise TypeError(f"cannot join experience of type {type(first).__name__}; sample() returns a RolloutBuffer or "
                    f"a tuple of (T, n_envs, ...) arrays")
