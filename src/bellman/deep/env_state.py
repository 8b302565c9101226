"""The state of Gymnasium environments as plain data, so that a checkpoint can hold it without pickling
objects (a pickled object runs code when it is loaded).

``capture(envs)`` walks a (vector) env, its wrappers and its sub-envs and records every attribute whose
value is plain data: numbers, strings, None, numeric numpy arrays, and lists / tuples / dicts of these,
plus each numpy ``Generator``'s bit-generator state. Attributes that describe rather than hold the state
(spaces, the env spec, functions, enums) are passed over, and so are the running statistics of the
normalisation wrappers, which the agent saves itself (`bellman.deep.normalize`). ``restore(envs, state)`` sets the recorded
attributes on a freshly built env of the same construction, which then continues exactly where the saved
one was: the classic-control, toy-text and grid-world envs keep all their state in such attributes.

An env holding state in some other object (a physics engine's data, a renderer) cannot be captured this
way: ``capture`` names those attributes in ``state["opaque"]``, and the caller resumes such envs with
fresh episodes instead.
"""

from __future__ import annotations

import copy
import enum
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec
from gymnasium.wrappers.utils import RunningMeanStd

from bellman.mdp import TabularMDP

_ENV_TYPES = (gym.Env, gym.vector.VectorEnv)
_DESCRIPTIVE = (gym.spaces.Space, EnvSpec, enum.Enum, type, TabularMDP)  # an env's description, not its state
_KEPT_BY_AGENT = (RunningMeanStd,)  # normalisation statistics: the agent's checkpoint holds them (deep.normalize)


def _plain(v: Any) -> bool:
    if v is None or isinstance(v, (bool, int, float, str, np.generic)):
        return True
    if isinstance(v, np.ndarray):
        return v.dtype != object
    if isinstance(v, (list, tuple)):
        return all(_plain(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain(x) for k, x in v.items())
    return False


def _descriptive(v: Any) -> bool:
    if isinstance(v, _DESCRIPTIVE + _KEPT_BY_AGENT) or callable(v) and not isinstance(v, _ENV_TYPES):
        return True
    if isinstance(v, (list, tuple, dict)):
        items = v.values() if isinstance(v, dict) else v
        return all(_descriptive(x) or _plain(x) for x in items)
    return False


def capture(env: Any, where: str = "env") -> dict[str, Any]:
    """The plain-data state of ``env`` (see the module docstring)."""
    attrs: dict[str, Any] = {}
    rngs: dict[str, Any] = {}
    children: dict[str, Any] = {}
    opaque: list[str] = []
    for k, v in vars(env).items():
        if isinstance(v, np.random.Generator):
            rngs[k] = v.bit_generator.state
        elif isinstance(v, _ENV_TYPES):
            children[k] = capture(v, f"{where}.{k}")
        elif isinstance(v, list) and v and all(isinstance(e, _ENV_TYPES) for e in v):
            children[k] = [capture(e, f"{where}.{k}[{i}]") for i, e in enumerate(v)]
        elif _plain(v):
            attrs[k] = copy.deepcopy(v)
        elif not _descriptive(v):
            opaque.append(f"{where}.{k} ({type(v).__name__})")
    for child in children.values():
        for c in child if isinstance(child, list) else [child]:
            opaque += c["opaque"]
    return {"type": type(env).__qualname__, "attrs": attrs, "rngs": rngs, "children": children, "opaque": opaque}


def restore(env: Any, state: dict[str, Any]) -> None:
    """Set what ``capture`` recorded on ``env``, an env built the same way."""
    if type(env).__qualname__ != state["type"]:
        raise ValueError(f"the saved environment is a {state['type']}, this one a {type(env).__qualname__}; "
                         f"build it the same way to resume")
    for k, v in state["attrs"].items():
        setattr(env, k, copy.deepcopy(v))
    for k, v in state["rngs"].items():
        rng = getattr(env, k, None)
        if not isinstance(rng, np.random.Generator):
            rng = np.random.Generator(getattr(np.random, v["bit_generator"])())
            setattr(env, k, rng)
        rng.bit_generator.state = v
    for k, v in state["children"].items():
        if isinstance(v, list):
            envs = getattr(env, k)
            if len(envs) != len(v):
                raise ValueError(f"the saved environment has {len(v)} copies in {k}, this one {len(envs)}")
            for e, s in zip(envs, v):
                restore(e, s)
        else:
            restore(getattr(env, k), v)
