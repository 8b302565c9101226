"""Command-line options generated from config dataclasses: one option per field, whose name, type, default
and help are the field's, so that a command never restates a default.

    @app.command()
    @options_from(GRPOConfig, shown="tiny", aliases={"learning_rate": ["--lr"]})
    def grpo(changes: Changes, out: Path = OUT, preset: str = PRESET) -> None:
        config = GRPOConfig.preset(preset, out=str(out), **changes[GRPOConfig])

``changes`` receives, per config class, the fields given on the command line (typed and parsed); fields
left out keep the value of the preset the command builds from. An option's shown default is the value in
the preset ``shown`` ("default": the field's default).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import typer

from bellman.core.config import DEFAULT_PRESET, Config, split_optional

Changes = dict[type[Config], dict[str, Any]]
PLAIN_TYPES = (bool, int, float, str)


def option_text(value: Any) -> str:
    """How a value is written on the command line: none, 1.0,2.0, or its str."""
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def option_value(cls: type[Config], name: str, value: Any) -> Any:
    """The typed field value of an option's value (options of other than plain types carry text)."""
    if cls.annotation(name) in PLAIN_TYPES:
        return value
    return cls.parse_value(name, value, said=f"--{name.replace('_', '-')} {value!r}")


def metavar(tp: Any) -> str:
    """[a|b] for a Literal, X,X,... for a tuple, X|none for an optional X."""
    inner, optional = split_optional(tp)
    if typing.get_origin(inner) is Literal:
        text = "[" + "|".join(str(a) for a in typing.get_args(inner)) + "]"
    elif typing.get_origin(inner) is tuple:
        text = typing.get_args(inner)[0].__name__.upper() + ",..."
    else:
        text = getattr(inner, "__name__", str(inner)).upper()
    return text + ("|none" if optional else "")


def _option(cls: type[Config], name: str, shown: str, names: Sequence[str]) -> inspect.Parameter:
    tp = cls.annotation(name)
    default, published = getattr(cls.preset(shown), name), getattr(cls(), name)
    dashed = "--" + name.replace("_", "-")
    help_ = cls.help(name)
    if shown != DEFAULT_PRESET and default != published:
        help_ += f" [{option_text(published)} with --preset {DEFAULT_PRESET}]"
    if tp is bool:
        info = typer.Option(default, f"{dashed}/--no-{dashed[2:]}", *names, help=help_)
    elif tp in PLAIN_TYPES:
        info = typer.Option(default, dashed, *names, help=help_)
    else:   # X | None, tuples, Literal: text read and checked by the config
        info = typer.Option(option_text(default), dashed, *names, help=help_, metavar=metavar(tp))
        tp = str
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=tp)


def options_from(*configs: type[Config], shown: str = DEFAULT_PRESET,
                 aliases: Mapping[str, Sequence[str]] | None = None,
                 skip: Sequence[str] = ("out",)) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give the decorated command one option per field of each config in ``configs`` (except ``skip``;
    ``aliases`` adds other names, e.g. {"learning_rate": ["--lr"]}) and pass it, as its ``changes``
    parameter, the fields set on the command line. The command records ``config_options`` (option name ->
    (config class, field, preset of its shown default)) for tests of its defaults."""
    aliases = aliases or {}

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(command)
        own = [p.replace(annotation=hints.get(p.name, p.annotation))
               for p in inspect.signature(command).parameters.values() if p.name != "changes"]
        fields: dict[str, tuple[type[Config], str, str]] = {}
        generated = []
        for cls in configs:
            for f in dataclasses.fields(cls):
                if f.name in skip:
                    continue
                if f.name in fields or any(p.name == f.name for p in own):
                    raise TypeError(f"{command.__name__}: option {f.name!r} would be declared twice")
                preset = shown if shown in cls.preset_names() else DEFAULT_PRESET
                fields[f.name] = (cls, f.name, preset)
                generated.append(_option(cls, f.name, preset, aliases.get(f.name, ())))
        unknown = set(aliases) - set(fields)
        if unknown:
            raise TypeError(f"{command.__name__}: aliases for fields it does not have: {sorted(unknown)}")
        context = inspect.Parameter("_context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            ctx = kwargs.pop("_context")
            changes: Changes = {cls: {} for cls in configs}
            for name, (cls, field, _) in fields.items():
                value = kwargs.pop(name)
                source = ctx.get_parameter_source(name)
                if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
                    changes[cls][field] = option_value(cls, field, value)
            return command(changes, **kwargs)

        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + generated + [context]
        run.__signature__ = inspect.Signature(parameters, return_annotation=hints.get("return", None))
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        run.config_options = fields
        return run

    return decorate
