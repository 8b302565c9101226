"""The shared LLM trainer: its learning-rate schedule equals transformers' schedulers."""

import pytest
import torch
from transformers import get_scheduler

from bellman.llm.trainer import lr_factor


@pytest.mark.parametrize("name", ["constant", "linear", "cosine"])
@pytest.mark.parametrize("warmup", [0, 3])
def test_lr_factor_equals_transformers(name, warmup):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    hf = "constant_with_warmup" if name == "constant" else name
    ref = get_scheduler(hf, opt, num_warmup_steps=warmup, num_training_steps=12).lr_lambdas[0]
    assert [lr_factor(s, name, warmup, 12) for s in range(14)] == pytest.approx([ref(s) for s in range(14)], abs=1e-12)
    with pytest.raises(ValueError, match="lr schedule must be one of"):
        lr_factor(0, "step", 0, 12)
