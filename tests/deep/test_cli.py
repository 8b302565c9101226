"""`bellman train / eval / plot`: a tiny run end to end, resume, and one-line errors."""

import json
import subprocess
import sys

from typer.testing import CliRunner

from bellman.cli import app
from bellman.deep import PPO

runner = CliRunner(env={"BELLMAN_DEBUG": "1"})  # errors propagate, so their type and message are checked
TINY = ["--set", "n_envs=2", "--set", "n_steps=32", "--set", "batch_size=32", "--set", "n_epochs=1",
        "--set", "hidden=8", "--no-progress", "--episodes", "3"]


def test_train_eval_plot_resume(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "ppo", "--env", "CartPole-v1", "--steps", "128", "--seed", "1",
                                 "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    assert {"metrics.csv", "checkpoint.pt", "eval.json", "config.json"} <= {p.name for p in out.iterdir()}
    assert list((out / "tb").glob("events.out.tfevents.*"))
    saved = json.loads((out / "eval.json").read_text())
    assert set(saved) == {"mean_return", "std_return", "episodes"} and saved["episodes"] == 3
    assert json.loads((out / "config.json").read_text())["config"]["hidden"] == [8]
    fast = tmp_path / "fast"
    result = runner.invoke(app, ["train", "ppo", "--fast", "--steps", "256", "--out", str(fast), *TINY[8:]])
    assert result.exit_code == 0, result.output
    config = json.loads((fast / "config.json").read_text())["config"]
    assert (config["n_envs"], config["n_steps"], config["n_epochs"]) == (16, 16, 4) and config["hidden"] == [8]

    result = runner.invoke(app, ["eval", str(out), "--episodes", "3"])
    assert result.exit_code == 0 and json.loads(result.output) == saved  # deterministic evaluation

    result = runner.invoke(app, ["train", "ppo", "--steps", "256", "--out", str(out), "--resume", "--no-progress",
                                 "--episodes", "3"])
    assert result.exit_code == 0, result.output
    assert PPO.load(out / "checkpoint.pt").step >= 256
    result = runner.invoke(app, ["plot", str(out), str(out), "--out", str(tmp_path / "curve.png")])
    assert result.exit_code == 0 and (tmp_path / "curve.png").stat().st_size > 1000


def test_bad_inputs_raise_clear_errors(tmp_path):
    cases = [
        (["train", "ppo", "--env", "CartPool-v1", "--out", str(tmp_path / "b")], "unknown env id 'CartPool-v1'"),
        (["train", "ppo", "--set", "clip=0.1", "--out", str(tmp_path / "c")], "unknown PPOConfig key"),
        (["train", "ppo", "--set", "gamma=2", "--out", str(tmp_path / "d")], "PPOConfig.gamma = 2.0 is invalid"),
        (["eval", str(tmp_path / "missing")], "no checkpoint"),
        (["train", "dqn", "--fast", "--out", str(tmp_path / "e")], "DQNConfig has no fast preset for 'CartPole-v1'"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert isinstance(result.exception, (ValueError, FileNotFoundError)), (args, result.output)
        assert message in str(result.exception)


def test_error_is_one_line_on_the_command_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "bellman", "train", "sarsa-deep", "--out", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown algorithm 'sarsa-deep'" in result.stderr and "Traceback" not in result.stderr


def test_help_does_not_import_torch():
    code = "import sys; import bellman.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
