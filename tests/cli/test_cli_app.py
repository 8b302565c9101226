"""The `bellman` app: one-line errors (or tracebacks with --debug), quick --help, and option defaults that
are the config fields' own."""

import dataclasses
import json
import pickle
import subprocess
import sys

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from bellman.cli import Bellman, app
from bellman.cli.llm import ALIASES, preset_for
from bellman.cli.options import option_value
from bellman.core.config import DEFAULT_PRESET
from bellman.llm.config import R1ZeroConfig

runner = CliRunner()

ERRORS = [
    (ValueError("bad value"), "error: bad value"),
    (TypeError("bad type"), "error: bad type"),
    (KeyError("missing key"), "error: KeyError: missing key"),
    (FileNotFoundError("no such file"), "error: no such file"),
    (FileExistsError("exists"), "error: exists"),
    (NotADirectoryError("not a dir"), "error: not a dir"),
    (IsADirectoryError("a dir"), "error: a dir"),
    (PermissionError(13, "Permission denied", "/root/x"), "error: [Errno 13] Permission denied: '/root/x'"),
    (OSError("disk full"), "error: disk full"),
    (MemoryError(), "error: MemoryError"),
    (pickle.UnpicklingError("invalid load key"), "error: UnpicklingError: invalid load key"),
    (FloatingPointError("loss is nan at step 3"), "error: FloatingPointError: loss is nan at step 3"),
    (RuntimeError("value iteration did not reach tol"), "error: RuntimeError: value iteration did not reach tol"),
    (ValueError("two\nlines"), "error: two lines"),
]


def raising_app(error: BaseException) -> typer.Typer:
    demo = typer.Typer(cls=Bellman)

    @demo.callback()
    def root(debug: bool = typer.Option(False, "--debug")) -> None:
        """root"""

    @demo.command()
    def fail() -> None:
        raise error

    return demo


@pytest.mark.parametrize("error, line", ERRORS)
def test_user_errors_are_one_line_with_exit_status_2(error, line):
    result = runner.invoke(raising_app(error), ["fail"])
    assert result.exit_code == 2 and result.output.strip().splitlines() == [line], result.output


@pytest.mark.parametrize("how", [dict(args=["--debug", "fail"]), dict(args=["fail"], env={"BELLMAN_DEBUG": "1"})])
def test_debug_lets_the_error_propagate(how):
    result = runner.invoke(raising_app(ValueError("bad value")), how["args"], env=how.get("env"))
    assert isinstance(result.exception, ValueError) and str(result.exception) == "bad value"


def test_programming_errors_keep_their_traceback():
    result = runner.invoke(raising_app(AttributeError("no attribute x")), ["fail"])
    assert isinstance(result.exception, AttributeError)


def test_usage_errors_and_the_real_command_line():
    result = runner.invoke(app, ["llm", "sft", "--out", "x", "--steps", "many"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("error: Invalid value for '--total-steps' / '--steps'")
    run = subprocess.run([sys.executable, "-m", "bellman", "llm", "grpo", "--out", "x", "--loss-type", "ppo"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip() == "error: GRPOConfig.loss_type = 'ppo' is invalid; allowed: 'grpo', 'dapo' or 'dr_grpo'"
    run = subprocess.run([sys.executable, "-m", "bellman", "--debug", "llm", "grpo", "--out", "x", "--loss-type",
                          "ppo"], capture_output=True, text=True)
    assert run.returncode == 1 and "Traceback" in run.stderr


@pytest.mark.parametrize("command", [[], ["llm"], ["llm", "grpo"], ["llm", "r1-zero"], ["train"], ["gridworld"],
                                     ["gridworld", "learn"]])
def test_help_imports_no_heavy_library(command):
    code = ("import runpy, sys\nsys.argv = ['bellman', *sys.argv[1:], '--help']\ntry:\n"
            "    runpy.run_module('bellman', run_name='__main__')\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "print(sorted(m for m in ('torch', 'transformers', 'matplotlib', 'gymnasium') if m in sys.modules), "
            "file=sys.stderr)")
    run = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True)
    assert run.returncode == 0 and "Usage" in run.stdout, run.stderr
    assert run.stderr.strip().splitlines()[-1] == "[]"


def commands(cmd, path=()):
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from commands(sub, (*path, name))
    else:
        yield " ".join(path), cmd


def test_every_option_of_a_config_field_has_that_field_s_default():
    """An option setting a config field shows the field's value in the preset the command shows (its default
    otherwise); an option of a command's config field that is not generated from the field (a restated one)
    fails here too."""
    checked, configured = 0, set()
    nested = {("llm r1-zero", "grpo_steps"): R1ZeroConfig().grpo.total_steps}   # R1ZeroConfig.grpo.total_steps
    for path, cmd in commands(get_command(app)):
        generated = getattr(cmd.callback, "config_options", None)
        if generated is None:
            continue
        configured.add(path)
        classes = {cls for cls, _, _ in generated.values()}
        spellings = {f"--{f.name.replace('_', '-')}" for cls in classes for f in dataclasses.fields(cls)}
        spellings |= {a for names in ALIASES.values() for a in names}
        for param in cmd.params:
            if param.name in generated:
                cls, field, preset = generated[param.name]
                shown = option_value(cls, field, param.default)
                assert shown == getattr(cls.preset(preset), field), (path, param.name)
                assert preset == DEFAULT_PRESET or shown == getattr(cls.preset("tiny"), field)
                checked += 1
            elif (path, param.name) in nested:
                assert param.default == nested[path, param.name]
            elif param.name == "out":   # required here; the configs' out None means "write no files"
                assert param.required
            else:   # not generated: it must not set one of the command's config fields under another default
                assert param.name not in {f.name for cls in classes for f in dataclasses.fields(cls)}, (path, param.name)
                assert not set(getattr(param, "opts", ())) & spellings, (path, param.opts)
    assert configured == {"llm sft", "llm grpo", "llm rm", "llm ppo", "llm dpo", "llm r1-zero", "llm draft"}
    assert checked > 100


def test_auto_preset_follows_the_model(tmp_path):
    from bellman.llm.model import TinyConfig, tiny_model

    assert preset_for("auto", "tiny") == "tiny" and preset_for("default", "tiny") == "default"
    tiny_model(seed=0)[0].config.save_pretrained(tmp_path / "saved")
    assert preset_for("auto", str(tmp_path / "saved")) == "tiny"
    tiny_model(TinyConfig(hidden_size=64), seed=0)[0].config.save_pretrained(tmp_path / "other")
    assert preset_for("auto", str(tmp_path / "other")) == "default"
    assert preset_for("auto", str(tmp_path / "missing")) == "default"


@pytest.mark.parametrize("args, held", [(["llm", "sft"], "."), (["llm", "r1-zero"], "base"), (["train", "ppo"], ".")])
def test_an_existing_run_needs_resume(tmp_path, args, held):
    (tmp_path / held).mkdir(exist_ok=True)
    (tmp_path / held / "run.json").write_text(json.dumps({}))
    result = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == f"error: {tmp_path / held if held != '.' else tmp_path} already holds a run; " \
                                    "pass resume=True (--resume on the command line) to continue it, or choose " \
                                    "another output directory"


def test_the_command_line_and_the_api_give_the_same_run(tmp_path):
    from bellman.core.metrics import read_metrics
    from bellman.llm.model import load_model
    from bellman.llm.sft import SFTConfig, SFTTrainer
    from bellman.llm.tasks import get_task

    result = runner.invoke(app, ["llm", "sft", "--out", str(tmp_path / "cli"), "--steps", "2", "--batch-size", "4",
                                 "--eval-rows", "4", "--eval-max-new-tokens", "4", "--no-progress"])
    assert result.exit_code == 0, result.output
    model, tok = load_model("tiny", seed=0)
    config = SFTConfig.preset("tiny", out=str(tmp_path / "api"), total_steps=2, batch_size=4, eval_rows=4,
                              eval_max_new_tokens=4, progress=False)
    SFTTrainer(model, tok, get_task("arithmetic", seed=0), config).train()
    assert json.loads((tmp_path / "cli" / "eval.json").read_text()) == json.loads((tmp_path / "api" / "eval.json").read_text())
    cli, api = read_metrics(tmp_path / "cli"), read_metrics(tmp_path / "api")
    assert cli["loss"] == api["loss"] and len(cli["loss"]) == 2
