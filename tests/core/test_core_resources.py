"""Sizes a user sets are checked against this machine's memory before anything is allocated."""

import sys

import numpy as np
import pytest

from bellman.core.resources import ResourceError, available_memory
from bellman.deep import PPOConfig
from bellman.deep.buffers import ReplayBuffer, RolloutBuffer


def test_oversized_buffers_and_env_counts_are_clear_errors():
    assert available_memory() > 0
    with pytest.raises(ResourceError, match=r"a replay buffer of 1,000,000,000,000 transitions needs .* GiB, more "
                                            r"than 80% of the .* GiB this machine has available; lower buffer_size"):
        ReplayBuffer(10**12, (4,), (), action_dtype=np.int64)
    with pytest.raises(ResourceError, match="lower n_steps or n_envs"):
        RolloutBuffer(10**7, 10**5, 4, (), discrete=True)
    with pytest.raises(ValueError, match=r"n_envs = 1000000000 is invalid; allowed: an int in \[1, 65536\]"):
        PPOConfig(n_envs=10**9)
    assert len(ReplayBuffer(1000, (4,), ())) == 0  # ordinary sizes pass


def test_a_decoding_batch_larger_than_memory_is_a_clear_error():
    from bellman.llm.engine.base import check_decoding_memory
    from bellman.llm.model import load_model
    model, _ = load_model("tiny", seed=0)
    check_decoding_memory(model, 64, 256)  # an ordinary batch passes
    with pytest.raises(ResourceError, match=r"the KV cache of 100,000,000 sequences of 4,096 tokens needs .* lower "
                                            r"the number of prompts x completions per batch or max_new_tokens"):
        check_decoding_memory(model, 10**8, 4096)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_reuses_the_pages_of_freed_blocks():
    """After keep_freed_memory, freed 16 MiB blocks' pages serve the next ones: once the heap has grown to
    the size in use, touching a new block faults in (almost) no new pages, where a block mapped fresh from
    the kernel faults in all 4,096 (the C library's default for blocks of this size)."""
    import resource

    import torch

    from bellman.core.resources import keep_freed_memory
    assert keep_freed_memory()
    faults = []
    for _ in range(6):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.empty(4 * 2**20).fill_(1.0)  # 16 MiB, every page touched
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        del x
    assert max(faults[3:]) < 16 * 2**20 // 4096 // 10, faults
