"""The output directory of a run: owned by one process at a time, never mixed with another run.

``RunDir(out, identity, resume)`` is a context manager that

1. creates ``out`` (a clear error if it is a file or cannot be written);
2. takes an exclusive, non-blocking ``fcntl.flock`` on ``out/.lock`` and writes its holder (pid, host, start
   time) there; a second run on the same folder fails at once naming the holder. The kernel drops the lock
   when the process dies, so a killed run never leaves a stale lock behind;
3. applies the one resume rule: a folder that already holds a run (``run.json``) is an error unless
   ``resume`` is set, and then the saved identity must equal ``identity`` (every setting that defines the
   run: algorithm, environment or task, model, seed, config); a difference is an error naming each key.
   With ``resume`` and no run there yet, a fresh run starts.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any


RUN_FILES = ("checkpoint.pt", "metrics.csv")  # what a run writes besides run.json


class RunLockedError(RuntimeError):
    """Another process is writing to this output directory."""


class RunExistsError(FileExistsError):
    """The output directory holds a run and ``resume`` was not asked for."""


class RunMismatchError(ValueError):
    """``resume`` on a directory whose run was started with other defining settings."""


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: saved there, current here`` for each leaf where two nested dicts differ."""
    out = []
    for k in sorted(saved.keys() | current.keys(), key=str):
        a, b = saved.get(k, "<absent>"), current.get(k, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} there, {b!r} here")
    return out


class RunDir:
    """An output directory held by this run (see the module docstring)."""

    def __init__(self, out: str | os.PathLike, identity: dict[str, Any], resume: bool = False,
                 how_to_resume: str = "resume=True (--resume on the command line)"):
        if not isinstance(resume, bool):
            raise TypeError(f"resume must be a bool, got {resume!r}")
        self.path = Path(out)
        self.identity = _jsonable(identity)
        self.resume = resume
        self.how_to_resume = how_to_resume
        self.resuming = False
        self._lock: Any = None

    def __enter__(self) -> RunDir:
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"output directory {self.path} is a file; choose a folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock = open(self.path / ".lock", "a+")
        except PermissionError:
            raise PermissionError(f"cannot write to output directory {self.path} (permission denied)") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise RunLockedError(f"{self.path} is in use by {holder}; wait for it to finish or choose another "
                                 f"output directory") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        lock.flush()
        self._lock = lock
        try:
            self._check_identity()
        except BaseException:
            self.close()
            raise
        return self

    def _check_identity(self) -> None:
        saved_path = self.path / "run.json"
        if not saved_path.is_file():
            stray = [n for n in RUN_FILES if (self.path / n).exists()]
            if stray:
                raise RunExistsError(f"{self.path} holds {', '.join(stray)} but no run.json, so it cannot be told "
                                     f"which run they belong to; choose another output directory")
            tmp = saved_path.with_name(".run.json.tmp")
            tmp.write_text(json.dumps(self.identity, indent=2) + "\n")
            os.replace(tmp, saved_path)
            return
        if not self.resume:
            raise RunExistsError(f"{self.path} already holds a run; pass {self.how_to_resume} to continue it, "
                                 f"or choose another output directory")
        try:
            saved = json.loads(saved_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise RunMismatchError(f"{saved_path} cannot be read ({e}); choose another output directory") from None
        differ = differences(saved, self.identity)
        if differ:
            raise RunMismatchError(f"{self.path} holds a run with other settings (" + "; ".join(differ)
                                   + "); resume with the same settings or choose another output directory")
        self.resuming = True

    def close(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __exit__(self, *exc: Any) -> None:
        self.close()
