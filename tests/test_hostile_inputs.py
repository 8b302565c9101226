"""What a hostile or unlucky user can do to a run directory, through the command line: a planted checkpoint
runs nothing, a corrupt one is named in one line, a second run on a held directory is refused, and every
such error is one line (exit code 2), never a traceback."""

import hashlib
import io
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from typer.testing import CliRunner

from bellman.cli import app

TINY = ["--set", "n_envs=2", "--set", "n_steps=16", "--set", "batch_size=16", "--set", "n_epochs=1",
        "--set", "hidden=16", "--no-progress"]


class Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(path, marker):
    """A checkpoint with a valid header and checksum around a pickle that runs a shell command when loaded."""
    buf = io.BytesIO()
    torch.save({"kind": "bellman.deep", "class": "PPO", "x": Planted(marker)}, buf)
    payload = buf.getvalue()
    path.write_bytes(b"bellman-checkpoint 1 sha256=%s bytes=%d\n" % (hashlib.sha256(payload).hexdigest().encode(),
                                                                    len(payload)) + payload)


def one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ppo"
    r = CliRunner().invoke(app, ["train", "ppo", "--steps", "64", "--out", str(out), *TINY])
    assert r.exit_code == 0, r.output
    return out


def test_planted_checkpoint_runs_nothing(run_dir, tmp_path):
    marker = tmp_path / "planted"
    target = tmp_path / "run"
    target.mkdir()
    for name in ("run.json", "checkpoint.pt"):
        (target / name).write_bytes((run_dir / name).read_bytes())
    plant(target / "checkpoint.pt", marker)
    runner = CliRunner()
    one_line_error(runner.invoke(app, ["eval", str(target)]), "holds something other than tensors")
    one_line_error(runner.invoke(app, ["train", "ppo", "--steps", "128", "--out", str(target), "--resume",
                                       "--no-progress"]), "holds something other than tensors")
    llm = tmp_path / "llm"
    sft = ["llm", "sft", "--out", str(llm), "--steps", "1", "--eval-rows", "1", "--batch-size", "2"]
    assert runner.invoke(app, sft).exit_code == 0
    plant(llm / "checkpoint.pt", marker)
    one_line_error(runner.invoke(app, sft + ["--total-steps", "2", "--resume"]), "holds something other than tensors")
    stray = tmp_path / "stray"  # a checkpoint with no run.json beside it is not taken for this run's
    stray.mkdir()
    plant(stray / "checkpoint.pt", marker)
    one_line_error(runner.invoke(app, ["llm", "sft", "--out", str(stray), "--steps", "1", "--resume"]),
                   "holds checkpoint.pt but no run.json")
    assert not marker.exists()


def test_corrupt_checkpoints_are_named_in_one_line(run_dir, tmp_path):
    runner = CliRunner()
    for name, damage in (("truncated", lambda b: b[: len(b) // 2]), ("empty", lambda b: b""),
                         ("flipped", lambda b: b[:2000] + bytes([b[2000] ^ 0xFF]) + b[2001:])):
        target = tmp_path / name
        target.mkdir()
        (target / "checkpoint.pt").write_bytes(damage((run_dir / "checkpoint.pt").read_bytes()))
        one_line_error(runner.invoke(app, ["eval", str(target)]), str(target / "checkpoint.pt"))


def test_os_errors_are_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    runner = CliRunner()
    one_line_error(runner.invoke(app, ["train", "ppo", "--steps", "32", "--out", str(tmp_path / "file"), *TINY]),
                   "is a file; choose a folder")
    one_line_error(runner.invoke(app, ["train", "ppo", "--steps", "32", "--out", str(tmp_path / "file" / "x"), *TINY]))
    one_line_error(runner.invoke(app, ["eval", str(tmp_path / "nowhere")]), "no checkpoint at")
    one_line_error(runner.invoke(app, ["train", "ppo", "--set", "n_envs=1000000000", "--out", str(tmp_path / "big")]),
                   "n_envs")


def test_a_second_run_on_a_held_directory_is_refused(tmp_path):
    out = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from bellman.core.run import RunDir
        with RunDir({str(out)!r}, {{}}):
            print("held", flush=True)
            sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = CliRunner().invoke(app, ["train", "ppo", "--steps", "32", "--out", str(out), *TINY])
        one_line_error(r, f"is in use by pid {holder.pid}")
    finally:
        holder.communicate("\n", timeout=30)
    assert not (out / "metrics.csv").exists()
