"""Atomic checkpoints: write to a temporary file in the same folder, fsync, then rename over the target.

A crash or kill while saving leaves either the previous checkpoint or the new one, never half a file.
The payload is any picklable dict (torch.save); `Agent.save` fills it with networks, optimisers, buffers,
RNG states (python, numpy, torch, environments) and the step counter. Load only checkpoints you trust:
they are unpickled.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def save_atomic(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """torch.save `payload` to `path` atomically (temp file + fsync + rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by `save_atomic`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=False)


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The states of python's `random`, torch's global generator and the agent's numpy generator."""
    return {"python": random.getstate(), "torch": torch.get_rng_state(), "numpy": rng.bit_generator.state}


def set_rng_state(state: dict[str, Any], rng: np.random.Generator) -> None:
    """Restore what `rng_state` captured."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    rng.bit_generator.state = state["numpy"]
