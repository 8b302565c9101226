"""Seeds and random-number-generator state.

``derive_seed(seed, *keys)`` gives the seed of an independent stream (the evaluation episodes, the batch
of update ``step``) with NumPy's ``SeedSequence``, whose hashing makes streams of nearby keys
statistically independent (O'Neill 2015, "PCG: A Family of Simple Fast Space-Efficient Statistically Good
Algorithms for Random Number Generation"; numpy.random.SeedSequence), instead of offsets or products that
can collide. ``rng_state`` / ``set_rng_state`` capture what a checkpoint needs to continue the same
streams: Python's ``random``, torch's global generator and a numpy ``Generator``.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np


def check_seed(seed: Any, name: str = "seed") -> int:
    """``seed`` as an int, or a ValueError if it is not an int >= 0."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name} must be an int >= 0, got {seed!r}")
    return int(seed)


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed for the stream named by ``keys`` under ``seed`` (the same arguments, the same seed)."""
    state = np.random.SeedSequence(check_seed(seed), spawn_key=tuple(int(k) for k in keys)).generate_state(2)
    return int((int(state[0]) << 32 | int(state[1])) >> 1)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random`` and torch's global generator with ``seed``."""
    import torch

    random.seed(check_seed(seed))
    torch.manual_seed(seed)


def rng_state(rng: np.random.Generator | None = None) -> dict[str, Any]:
    """The states of Python's ``random``, torch's global generator and (if given) a numpy Generator."""
    import torch

    version, internal, gauss = random.getstate()
    state = {"python": [version, list(internal), gauss], "torch": torch.get_rng_state()}
    if rng is not None:
        state["numpy"] = rng.bit_generator.state
    return state


def set_rng_state(state: dict[str, Any], rng: np.random.Generator | None = None) -> None:
    """Restore what ``rng_state`` captured."""
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if rng is not None:
        rng.bit_generator.state = state["numpy"]


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads and restore the previous count after (None: leave it)."""
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
