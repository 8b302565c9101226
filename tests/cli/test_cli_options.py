"""Options generated from a config: names, aliases, types, shown defaults, and only given options change it."""

import dataclasses
from typing import Literal

import typer
from typer.testing import CliRunner

from bellman.cli import Bellman
from bellman.cli.options import options_from
from bellman.core.config import Config, field


@dataclasses.dataclass
class Demo(Config):
    out: str | None = field(None, "where to write")
    total_steps: int = field(10, "updates")
    rate: float = field(0.5, "step size")
    shuffle: bool = field(True, "shuffle the rows")
    kind: Literal["a", "b"] = field("a", "the kind")
    limit: float | None = field(2.0, "an optional bound")
    weights: tuple[float, ...] | None = field(None, "weights")

    presets = {"small": dict(total_steps=3, limit=None)}


def demo_app(seen: list) -> typer.Typer:
    app = typer.Typer(cls=Bellman)

    @app.callback()
    def root() -> None:
        """root"""

    @app.command()
    @options_from(Demo, shown="small", aliases={"total_steps": ["--steps"]})
    def go(changes, name: str = typer.Option("x")) -> None:
        seen.append((name, changes[Demo], Demo.preset("small", **changes[Demo])))

    return app


def test_only_given_options_change_the_preset():
    seen = []
    runner = CliRunner()
    assert runner.invoke(demo_app(seen), ["go"]).exit_code == 0
    assert seen[-1] == ("x", {}, Demo.preset("small"))
    args = ["go", "--steps", "3", "--rate", "0.1", "--no-shuffle", "--kind", "b", "--limit", "none",
            "--weights", "1,2", "--name", "y"]
    assert runner.invoke(demo_app(seen), args).exit_code == 0
    assert seen[-1][:2] == ("y", {"total_steps": 3, "rate": 0.1, "shuffle": False, "kind": "b", "limit": None,
                                  "weights": (1.0, 2.0)})   # a value equal to the preset's still counts as given
    result = runner.invoke(demo_app(seen), ["go", "--kind", "c"])
    assert result.exit_code == 2 and "error: Demo.kind = 'c' is invalid; allowed: 'a' or 'b'" in result.output
    result = runner.invoke(demo_app(seen), ["go", "--out", "d"])
    assert result.exit_code == 2 and "No such option: --out" in result.output   # skipped by default


def test_help_shows_the_preset_value_and_the_published_default():
    result = CliRunner().invoke(demo_app([]), ["go", "--help"], terminal_width=200, env={"COLUMNS": "200"})
    text = " ".join(result.output.split())
    assert "--total-steps,--steps" in text and "updates [10 with --preset default] [default: 3]" in text
    assert "[a|b]" in text and "FLOAT|none" in text and "FLOAT,...|none" in text and "--no-shuffle" in text
