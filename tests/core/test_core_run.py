"""Run directories: one run at a time (a second process is refused, naming the holder), the resume rule
and the identity check, clear errors for an output path that is a file or unwritable."""

import subprocess
import sys
import textwrap

import pytest

from bellman.core.run import RunDir, RunExistsError, RunLockedError, RunMismatchError

IDENTITY = {"algo": "PPO", "seed": 0, "config": {"lr": 1e-3, "n_envs": 8}}


def test_resume_rule_and_identity(tmp_path):
    with RunDir(tmp_path / "r", IDENTITY) as run:
        assert not run.resuming
    with pytest.raises(RunExistsError, match="already holds a run; pass resume=True"):
        RunDir(tmp_path / "r", IDENTITY).__enter__()
    with RunDir(tmp_path / "r", IDENTITY, resume=True) as run:
        assert run.resuming
    other = {**IDENTITY, "seed": 1, "config": {"lr": 2e-3, "n_envs": 8}}
    with pytest.raises(RunMismatchError, match=r"config.lr: 0.001 there, 0.002 here; seed: 0 there, 1 here"):
        RunDir(tmp_path / "r", other, resume=True).__enter__()
    with RunDir(tmp_path / "fresh", IDENTITY, resume=True) as run:  # nothing to resume: a new run starts
        assert not run.resuming


def test_a_second_process_is_refused_while_the_first_holds_the_directory(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from bellman.core.run import RunDir
        with RunDir({str(tmp_path / 'r')!r}, {{}}):
            print("held", flush=True)
            sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=rf"is in use by pid {holder.pid} on .* since"):
            RunDir(tmp_path / "r", {}, resume=True).__enter__()
    finally:
        holder.communicate("\n", timeout=30)
    with RunDir(tmp_path / "r", {}, resume=True):  # released when the holder ended
        pass


def test_lock_is_released_on_error_and_by_a_dead_process(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with RunDir(tmp_path / "r", {}):
            1 / 0
    subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os
        from bellman.core.run import RunDir
        RunDir({str(tmp_path / 'r')!r}, {{}}, resume=True).__enter__()
        os._exit(9)  # killed while holding it
    """)], check=False)
    with RunDir(tmp_path / "r", {}, resume=True):
        pass


def test_output_path_errors(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file; choose a folder"):
        RunDir(tmp_path / "file", {}).__enter__()
    with pytest.raises(TypeError, match="resume must be a bool"):
        RunDir(tmp_path / "r", {}, resume="yes")
