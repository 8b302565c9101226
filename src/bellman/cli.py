"""The `bellman` command. Each part of the library adds its own sub-commands here."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

app = typer.Typer(help="bellman: reinforcement learning from the Bellman equation to LLM post-training.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
err = Console(stderr=True)

from bellman.gridworld_cli import app as _gw; app.add_typer(_gw, name="gridworld")  # noqa: E402, E702

from bellman.deep.cli import register as _register_deep; _register_deep(app)  # noqa: E402, E702

from bellman.llm.cli import app as _llm; app.add_typer(_llm, name="llm")  # noqa: E402,E702


def main() -> None:
    """Entry point: bad input ends in a one-line error, not a traceback."""
    try:
        app()
    except (ValueError, TypeError, FileNotFoundError, KeyError) as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
