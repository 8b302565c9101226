"""Beyond one machine: rollout workers on Ray for deep RL and GRPO. Needs the `[distributed]` extra (Ray).

- ``workers``: ``connect`` (where Ray runs) and ``WorkerPool`` (Ray actors, restarted when lost);
- ``deep``: an agent with ``num_workers`` > 0 samples on workers in ``learn`` (``RolloutWorkers``);
- ``engine``: ``RemoteEngine``, an LLM engine whose completions and rewards are made on workers (GRPO with
  ``num_workers`` > 0).

Names are imported from their modules on first use (PEP 562), so importing this package loads neither Ray
nor torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "MAX_RESTARTS": "bellman.distributed.workers",
    "WorkerPool": "bellman.distributed.workers",
    "connect": "bellman.distributed.workers",
    "RolloutWorkers": "bellman.distributed.deep",
    "RemoteEngine": "bellman.distributed.engine",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bellman.distributed' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
