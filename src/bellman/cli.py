"""The `bellman` command. Each part of the library adds its own sub-commands here.

Sub-commands import torch and transformers lazily, so `bellman --help` stays quick.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from bellman.deep.cli import register as register_deep
from bellman.gridworld_cli import app as gridworld_app
from bellman.llm.cli import app as llm_app

app = typer.Typer(help="bellman: reinforcement learning from the Bellman equation to LLM post-training.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(gridworld_app, name="gridworld")
register_deep(app)
app.add_typer(llm_app, name="llm")
err = Console(stderr=True)


def main() -> None:
    """Entry point: bad input ends in a one-line error, not a traceback."""
    try:
        app()
    except (ValueError, TypeError, FileNotFoundError, KeyError) as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
