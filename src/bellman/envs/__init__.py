"""Environments: the course grid world, registered with Gymnasium as `bellman/GridWorld-v0`."""

import gymnasium as gym

from bellman.envs.gridworld import ACTIONS, GridWorld

if "bellman/GridWorld-v0" not in gym.registry:
    gym.register(id="bellman/GridWorld-v0", entry_point="bellman.envs.gridworld:GridWorld")

__all__ = ["ACTIONS", "GridWorld"]
