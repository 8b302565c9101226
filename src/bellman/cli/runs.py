"""The one rule for output directories of training commands: an existing run is continued only on request."""

from __future__ import annotations

from pathlib import Path

RUN_FILES = ("checkpoint.pt", "metrics.csv", "eval.json", "config.json")


def check_run_dir(out: Path, resume: bool, stages: tuple[str, ...] = (".",)) -> None:
    """Refuse to write a new run into ``out`` when it holds one (any of RUN_FILES in ``out`` or in its
    ``stages`` sub-directories) unless ``resume``; with ``resume``, require a checkpoint.pt to continue from."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {str(out)!r} is a file; pass a directory")
    dirs = [out / s for s in stages]
    held = any((d / f).exists() for d in dirs for f in RUN_FILES)
    if held and not resume:
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    if resume and not any((d / "checkpoint.pt").exists() for d in dirs):
        raise FileNotFoundError(f"--resume: {out} holds no checkpoint.pt to continue from; "
                                "drop --resume to start a new run there")
