"""Checkpoints: one file per checkpoint, written atomically, checksummed, holding tensors and plain data only.

A checkpoint is a nested dict whose leaves are torch tensors, numpy arrays (numeric ones stored as tensors,
byte or text ones as lists, and given back as arrays), and plain Python values (None, bool, int, float, str, bytes; lists, tuples and dicts of
these). It is serialised with ``torch.save`` and read back with ``torch.load(weights_only=True)``, whose
unpickler builds only tensors and those plain types: a planted file cannot run code when it is loaded.

The file starts with one header line, ``bellman-checkpoint 1 sha256=<hex> bytes=<n>``, followed by the
torch payload; ``load`` verifies the length and the SHA-256 before unpickling anything, so a truncated
or corrupted file is an error naming the file, never a garbled state.

Writing goes to a temporary file in the same folder, which is flushed and fsynced and then renamed over
the target (POSIX rename is atomic), and the folder is fsynced; with ``keep_previous`` the file it
replaces is first hard-linked to ``<name>.prev<suffix>``. A kill at any instant therefore leaves the old
or the new checkpoint under the target name, and the one before it as ``.prev``.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"bellman-checkpoint"
VERSION = 1
_NDARRAY = "__ndarray__"


class CheckpointError(ValueError):
    """A checkpoint file that is not one, is truncated, or fails its checksum."""


def previous_path(path: str | os.PathLike) -> Path:
    """Where ``save(..., keep_previous=True)`` keeps the checkpoint that ``path`` replaced."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _encode(value: Any, where: str) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError(f"checkpoint entry {where} is a numpy array of Python objects; only numeric arrays")
        if value.dtype.kind in "SU":  # byte / text arrays (e.g. a map layout): as nested lists with their dtype
            return {_NDARRAY: value.tolist(), "dtype": value.dtype.str}
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(value).copy())}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, (str, int)):
                raise TypeError(f"checkpoint entry {where} has a key of type {type(k).__name__}; keys are str or int")
        return {k: _encode(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise TypeError(f"checkpoint entry {where} is a {type(value).__name__}; a checkpoint holds tensors, numpy "
                    f"arrays and plain data (None, bool, int, float, str, bytes, lists, tuples, dicts)")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_NDARRAY}:
            return value[_NDARRAY].numpy()
        if set(value) == {_NDARRAY, "dtype"}:
            return np.array(value[_NDARRAY], dtype=np.dtype(value["dtype"]))
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_decode(v) for v in value)
    return value


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(state: dict[str, Any], path: str | os.PathLike, keep_previous: bool = False) -> Path:
    """Write ``state`` to ``path`` atomically (see the module docstring); returns the path."""
    import torch

    if not isinstance(state, dict):
        raise TypeError(f"a checkpoint is a dict, got {type(state).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(_encode(state, "state"), buffer)
    payload = buffer.getbuffer()
    header = b"%s %d sha256=%s bytes=%d\n" % (MAGIC, VERSION, hashlib.sha256(payload).hexdigest().encode(),
                                               len(payload))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.is_file():
            prev = previous_path(path)
            link = prev.with_name(f".{prev.name}.link")
            link.unlink(missing_ok=True)
            os.link(path, link)
            os.replace(link, prev)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by ``save``, verifying its length and checksum first."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with open(path, "rb") as f:
        header = f.readline(256)
        payload = f.read()
    prev = previous_path(path)
    hint = f"; the previous checkpoint {prev} can be used instead (move it over {path.name})" if prev.is_file() else ""
    parts = header.split()
    if len(parts) != 4 or parts[0] != MAGIC or not header.endswith(b"\n"):
        raise CheckpointError(f"{path} is not a bellman checkpoint (empty, truncated or another format){hint}")
    if parts[1] != str(VERSION).encode():
        raise CheckpointError(f"{path} is a checkpoint of format {parts[1].decode(errors='replace')}; "
                              f"this version reads format {VERSION}")
    try:
        digest = parts[2].removeprefix(b"sha256=").decode()
        size = int(parts[3].removeprefix(b"bytes="))
    except ValueError:
        raise CheckpointError(f"{path} has a malformed header{hint}") from None
    if len(payload) != size:
        raise CheckpointError(f"{path} is truncated ({len(payload)} of {size} bytes){hint}")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(f"{path} is corrupt (its SHA-256 checksum does not match){hint}")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - the safe unpickler refuses anything but tensors and plain data
        raise CheckpointError(f"{path} holds something other than tensors and plain data: {e}") from None
    return _decode(state)
