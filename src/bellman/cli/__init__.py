"""The ``bellman`` command: one Typer app, a sub-module per part of the library, one error handler.

    bellman gridworld solve | learn      plan with the grid world's model or learn it (bellman.cli.gridworld)
    bellman train | eval | plot          deep RL on Gymnasium (bellman.cli.deep)
    bellman llm sft | grpo | rm | ppo | dpo | eval | r1-zero     LLM post-training (bellman.cli.llm)

Commands import torch, transformers, gymnasium and matplotlib inside their bodies, so ``bellman --help``
loads none of them. Every error a user can cause ends in one line ``error: ...`` on stderr and exit status
2; ``--debug`` (or ``BELLMAN_DEBUG=1``) lets the error propagate with its full traceback instead.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Sequence
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from bellman.cli import deep, gridworld, llm

# what bad input, a missing or unreadable file, a run that does not fit in memory or a diverging run raise
# (the library's own errors are ValueErrors, TypeErrors, FloatingPointErrors and RuntimeErrors)
USER_ERRORS = (ValueError, TypeError, KeyError, OSError, MemoryError, pickle.UnpicklingError, ArithmeticError,
               RuntimeError)
err = Console(stderr=True, soft_wrap=True)


def debugging(args: Sequence[str]) -> bool:
    """True with BELLMAN_DEBUG=1 (true, yes) or ``--debug`` among the options before the first command."""
    if os.environ.get("BELLMAN_DEBUG", "").strip().lower() in ("1", "true", "yes"):
        return True
    for arg in args:
        if not arg.startswith("-"):
            return False
        if arg == "--debug":
            return True
    return False


def message(e: BaseException) -> str:
    """One line naming the cause: the message of the library's errors, else the error's type and message."""
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    text = " ".join(text.split())
    if text and isinstance(e, (ValueError, TypeError, OSError)):
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class Bellman(TyperGroup):
    """The root command: runs the command tree under the one error handler."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            err.print("Aborted!")
            code = 1
        except Exception as e:
            if callable(getattr(e, "format_message", None)) and isinstance(getattr(e, "exit_code", None), int):
                code = usage_error(e)   # a click error: bad or missing options, or no arguments at all
            elif isinstance(e, USER_ERRORS) and not debugging(args):
                err.print(f"[bold red]error:[/] {escape(message(e))}", highlight=False)
                code = 2
            else:
                raise
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


def usage_error(e: Any) -> int:
    """Print a command-line usage error on one line (the help text where no arguments were given)."""
    if type(e).__name__ == "NoArgsIsHelpError":
        e.show()
    else:
        err.print(f"[bold red]error:[/] {escape(' '.join(e.format_message().split()))} (see --help)", highlight=False)
    return e.exit_code


app = typer.Typer(cls=Bellman, no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def root(debug: bool = typer.Option(False, "--debug", help="Show an error's full traceback instead of one "
                                                           "line (also: BELLMAN_DEBUG=1).")) -> None:
    """bellman: reinforcement learning from the Bellman equation to LLM post-training."""


app.add_typer(gridworld.app, name="gridworld")
deep.register(app)
app.add_typer(llm.app, name="llm")


def main() -> None:
    """The ``bellman`` entry point."""
    app(prog_name="bellman")
