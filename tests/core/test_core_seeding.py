"""Seeding: derived seeds are deterministic and distinct; torch thread counts are scoped."""

import pytest
import torch

from bellman.core.seeding import STRIDE, check_seed, derive_seed, eval_seed, torch_threads


def test_derived_seeds():
    assert derive_seed(2, 5) == 2 * 1_000_003 + 5 and eval_seed(2) == 2 + 1_000_003
    seeds = {derive_seed(s, k) for s in range(20) for k in (0, 1, 2, STRIDE - 1)}
    assert len(seeds) == 80  # distinct for every seed and every step below the stride
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        check_seed(-1)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        derive_seed(True, 1)


def test_thread_count_is_restored():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
