"""Checkpoints: round trip of tensors / arrays / plain data, atomic replacement keeping the previous one,
and every way a file can be bad (planted code, truncation, flipped bytes, empty, another format)."""

import os
import pickle
import random

import numpy as np
import pytest
import torch

from bellman.core import checkpoint
from bellman.core.checkpoint import CheckpointError
from bellman.core.seeding import rng_state, set_rng_state


def state():
    return {"w": torch.arange(6.0).reshape(2, 3), "buffer": np.arange(5, dtype=np.int64), "mask": np.array([True, False]),
            "meta": {"step": 7, "name": "ppo", "lr": 1e-3, "none": None, "shape": (2, 3), "list": [1, "a", 2.5]},
            "blob": b"\x00\x01", "scalar": np.float32(1.5)}


def test_round_trip_keeps_types_and_values(tmp_path):
    path = checkpoint.save(state(), tmp_path / "c.pt")
    back = checkpoint.load(path)
    assert torch.equal(back["w"], torch.arange(6.0).reshape(2, 3))
    assert isinstance(back["buffer"], np.ndarray) and back["buffer"].dtype == np.int64
    np.testing.assert_array_equal(back["mask"], [True, False])
    assert back["meta"] == {"step": 7, "name": "ppo", "lr": 1e-3, "none": None, "shape": (2, 3), "list": [1, "a", 2.5]}
    assert back["blob"] == b"\x00\x01" and back["scalar"] == 1.5 and type(back["scalar"]) is float


def test_rng_states_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    random.seed(5)
    torch.manual_seed(5)
    checkpoint.save({"rng": rng_state(rng)}, tmp_path / "r.pt")
    expected = (random.random(), torch.rand(2), rng.random())
    random.seed(0), torch.manual_seed(0), rng.random()
    set_rng_state(checkpoint.load(tmp_path / "r.pt")["rng"], rng)
    assert (random.random(), rng.random()) == (expected[0], expected[2]) and torch.equal(torch.rand(2), expected[1])


def test_objects_are_refused_when_saving(tmp_path):
    with pytest.raises(TypeError, match=r"state.net is a Linear; a checkpoint holds tensors"):
        checkpoint.save({"net": torch.nn.Linear(2, 2)}, tmp_path / "c.pt")
    with pytest.raises(TypeError, match="numpy array of Python objects"):
        checkpoint.save({"a": np.array([object()])}, tmp_path / "c.pt")
    assert not list(tmp_path.iterdir())  # nothing half-written


class Planted:
    def __reduce__(self):
        return (os.system, ("touch planted",))


def test_planted_code_does_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = checkpoint.save({"w": torch.zeros(2)}, tmp_path / "c.pt")
    # a well-formed header and a correct checksum around a pickle that runs a shell command when loaded
    import hashlib
    import io
    buf = io.BytesIO()
    torch.save({"w": Planted()}, buf)
    payload = buf.getvalue()
    good.write_bytes(b"bellman-checkpoint 1 sha256=%s bytes=%d\n" % (hashlib.sha256(payload).hexdigest().encode(),
                                                                    len(payload)) + payload)
    with pytest.raises(CheckpointError, match="other than tensors and plain data"):
        checkpoint.load(good)
    assert not (tmp_path / "planted").exists()
    # a bare pickle (no header) is not even unpickled
    (tmp_path / "bare.pt").write_bytes(pickle.dumps(Planted()))
    with pytest.raises(CheckpointError, match="not a bellman checkpoint"):
        checkpoint.load(tmp_path / "bare.pt")
    assert not (tmp_path / "planted").exists()


def test_truncated_flipped_and_empty_files_are_named(tmp_path):
    path = checkpoint.save(state(), tmp_path / "c.pt")
    checkpoint.save(state(), path, keep_previous=True)  # c.prev.pt now exists
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match=r"c.pt is truncated .*previous checkpoint .*c.prev.pt can be used"):
        checkpoint.load(path)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="corrupt .*SHA-256"):
        checkpoint.load(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a bellman checkpoint"):
        checkpoint.load(path)
    assert checkpoint.load(checkpoint.previous_path(path))["meta"]["step"] == 7  # the previous one is intact
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint.load(tmp_path / "missing.pt")


def test_kill_between_writes_leaves_a_loadable_checkpoint(tmp_path, monkeypatch):
    path = checkpoint.save({"step": 1}, tmp_path / "c.pt", keep_previous=True)
    checkpoint.save({"step": 2}, path, keep_previous=True)
    real_replace = os.replace
    for kill_at in (1, 2):  # the replace of the previous link, then the replace of the new file
        calls = {"n": 0}

        def dying_replace(src, dst, kill_at=kill_at, calls=calls):
            calls["n"] += 1
            if calls["n"] == kill_at:
                raise KeyboardInterrupt  # the process dies here
            return real_replace(src, dst)
        monkeypatch.setattr(checkpoint.os, "replace", dying_replace)
        with pytest.raises(KeyboardInterrupt):
            checkpoint.save({"step": 3}, path, keep_previous=True)
        monkeypatch.setattr(checkpoint.os, "replace", real_replace)
        assert checkpoint.load(path)["step"] == 2  # the last complete checkpoint
        assert checkpoint.load(checkpoint.previous_path(path))["step"] in (1, 2)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    checkpoint.save({"step": 3}, path, keep_previous=True)
    assert checkpoint.load(path)["step"] == 3 and checkpoint.load(checkpoint.previous_path(path))["step"] == 2
