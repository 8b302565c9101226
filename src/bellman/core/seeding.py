"""Seeds and random-number-generator state.

A run with seed ``s`` draws the randomness of its update ``step`` from ``derive_seed(s, step) = s * STRIDE +
step`` and seeds its evaluation episodes with ``eval_seed(s) = s + STRIDE``, where ``STRIDE = 1_000_003``
is the first prime above 10**6: the streams of two seeds never share a step seed within their first
million steps, and the evaluation seeds stay clear of the training environments' ``s + i`` (one per env
copy). Rollout worker ``i >= 1`` of a run (``bellman.distributed``) draws from its own streams, seeded with
``worker_seed(s, i)``, a hash of (s, i) by numpy's ``SeedSequence``; worker 0 continues the run's own.
``rng_state`` / ``set_rng_state`` capture what a checkpoint needs to continue the same streams:
Python's ``random``, torch's global generator and a numpy ``Generator``.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np

from bellman.core.config import check_int


def check_seed(seed: Any, name: str = "seed") -> int:
    """``seed`` as an int, or a ValueError if it is not an integer >= 0."""
    return check_int(name, seed, 0)


STRIDE = 1_000_003


def derive_seed(seed: int, step: int) -> int:
    """The seed of update ``step`` of the run seeded with ``seed`` (see the module docstring)."""
    return check_seed(seed) * STRIDE + check_seed(step, "step")


def eval_seed(seed: int) -> int:
    """The seed of the evaluation episodes of the run seeded with ``seed`` (see the module docstring)."""
    return check_seed(seed) + STRIDE


def worker_seed(seed: int, index: int) -> int:
    """The seed of rollout worker ``index``'s own random streams in the run seeded with ``seed`` (see the
    module docstring): 32 bits of ``numpy.random.SeedSequence([seed, index])``."""
    return int(np.random.SeedSequence([check_seed(seed), check_seed(index, "index")]).generate_state(1)[0])


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
