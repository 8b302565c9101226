"""Settings as dataclasses: typed, validated, documented, with named presets.

A config subclasses ``Config``; every field carries its help text, checks go in ``check()``::

    @dataclasses.dataclass
    class MyConfig(Config):
        n_steps: int = field(128, "rollout length per env")
        loss: Literal["huber", "mse"] = field("huber", "the TD loss")
        hidden: tuple[int, ...] = field((64, 64), "units of each hidden layer")

        presets = {"tiny": dict(n_steps=16, hidden=(8,))}   # MyConfig.preset("tiny", loss="mse")

        def check(self) -> None:
            super().check()
            self.require(self.n_steps >= 1, "n_steps", "an int >= 1")

Construction converts every value to its annotation (bool, int, float, str, ``Literal[...]``, ``X | None``,
``tuple[int, ...]``, ``tuple[float, ...]``, a nested ``Config``; a path given for a str is stored as its str),
with a TypeError naming the field for a value of the wrong type, then runs ``check()``. ``from_dict`` names unknown keys (with the closest known
one), ``parse`` reads ``key=value`` text (the command line's ``--set``), ``to_dict`` is ready for JSON,
``help(name)`` is a field's help text (inherited when a subclass only changes the default).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import numbers
import os
import types
import typing
from typing import Any, ClassVar, Literal, TypeVar, Union

C = TypeVar("C", bound="Config")
DEFAULT_PRESET = "default"  # the preset name every config has: its field defaults


def field(default: Any = dataclasses.MISSING, help: str = "", *,
          default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its help text (``dataclasses.field(metadata={"help": help})``)."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"help": help})


@dataclasses.dataclass
class Config:
    """Base of every settings dataclass (see the module docstring)."""

    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(type(self).__name__, f.name, getattr(self, f.name), hints[f.name]))
        self.check()

    def require(self, ok: bool, name: str, allowed: str) -> None:
        """Raise a ValueError naming the field, its value and what is allowed, unless ``ok``."""
        if not ok:
            raise ValueError(f"{type(self).__name__}.{name} = {getattr(self, name)!r} is invalid; allowed: {allowed}")

    def check(self) -> None:
        """Value checks; subclasses extend it (calling ``super().check()``)."""

    @classmethod
    def keys(cls) -> list[str]:
        """The field names, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any]) -> C:
        """Build from a dict, with a clear error for unknown keys."""
        cls._known(values)
        return cls(**values)

    @classmethod
    def _known(cls, keys: Any) -> None:
        unknown = sorted(set(keys) - set(cls.keys()))
        if unknown:
            close = {k: difflib.get_close_matches(k, cls.keys(), n=1) for k in unknown}
            said = ", ".join(f"{k!r}" + (f" (did you mean {m[0]!r}?)" if m else "") for k, m in close.items())
            raise ValueError(f"unknown {cls.__name__} key(s): {said}; allowed: {', '.join(cls.keys())}")

    @classmethod
    def preset_names(cls) -> list[str]:
        """"default" (the field defaults) and the names of ``presets``."""
        return [DEFAULT_PRESET, *(n for n in cls.presets if n != DEFAULT_PRESET)]

    @classmethod
    def preset(cls: type[C], name: str, **changes: Any) -> C:
        """The named preset (``presets[name]`` over the defaults; "default": the defaults), then ``changes``."""
        if name != DEFAULT_PRESET and name not in cls.presets:
            raise ValueError(f"{cls.__name__} has no preset {name!r}; known presets: {', '.join(cls.preset_names())}")
        return cls.from_dict({**cls.presets.get(name, {}), **changes})

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated like the constructor)."""
        return self.from_dict({**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, **changes})

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON types: tuples become lists, nested configs dicts."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def help(cls, name: str) -> str:
        """The help text of field ``name``, from the nearest class in the MRO that gives one."""
        cls._known([name])
        for klass in cls.__mro__:
            f = getattr(klass, "__dataclass_fields__", {}).get(name)
            if f is not None and f.metadata.get("help"):
                return f.metadata["help"]
        return ""

    @classmethod
    def annotation(cls, name: str) -> Any:
        """The resolved type annotation of field ``name``."""
        cls._known([name])
        return _hints(cls)[name]

    @classmethod
    def parse_value(cls, name: str, text: str, said: str | None = None) -> Any:
        """Field ``name``'s value read from text: "64,64" for tuples, "none" for None, true/false for bools.
        ``said`` is how the value was given, for the error message (default: name=text)."""
        return _parse_text(said or f"{name}={text.strip()!r}", text.strip(), cls.annotation(name))

    @classmethod
    def parse(cls, assignments: list[str]) -> dict[str, Any]:
        """Parse ["key=value", ...] (the command line's --set) into typed values."""
        out: dict[str, Any] = {}
        for item in assignments:
            key, sep, text = item.partition("=")
            key = key.strip()
            if not sep:
                raise ValueError(f"--set expects key=value, got {item!r}")
            cls._known([key])
            out[key] = cls.parse_value(key, text, said=f"--set {key}={text.strip()!r}")
        return out


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def split_optional(tp: Any) -> tuple[Any, bool]:
    """(X, True) for ``X | None``, else (tp, False)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else Union[tuple(rest)]), True
    return tp, False


def type_name(tp: Any) -> str:
    """How an annotation reads in messages and help: float, 'a' | 'b', tuple of ints, float or None."""
    tp, optional = split_optional(tp)
    if typing.get_origin(tp) is Literal:
        name = " | ".join(repr(a) for a in typing.get_args(tp))
    elif typing.get_origin(tp) is tuple:
        name = f"a tuple of {typing.get_args(tp)[0].__name__}s"
    else:
        name = getattr(tp, "__name__", str(tp))
    return name + (" or None" if optional else "")


def _or(values: tuple[Any, ...]) -> str:
    said = [repr(v) for v in values]
    return said[0] if len(said) == 1 else ", ".join(said[:-1]) + " or " + said[-1]


def _is_bool(v: Any) -> bool:   # numpy's bool is no numbers.Integral; told apart without importing numpy
    return isinstance(v, bool) or (type(v).__module__ == "numpy" and type(v).__name__ in ("bool", "bool_"))


def _is_int(v: Any) -> bool:   # numpy's integers are numbers.Integral
    return isinstance(v, numbers.Integral) and not _is_bool(v)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not _is_bool(v)


def check_int(name: str, value: Any, minimum: int = 1, allow_none: bool = False) -> int | None:
    """``value`` as an int if it is an integer (Python's or numpy's, not a bool) >= ``minimum``, else a ValueError
    naming ``name``, the value and what is allowed: the one integer check of plain function arguments (config
    fields are checked by their annotation)."""
    if allow_none and value is None:
        return None
    if not _is_int(value) or value < minimum:
        allowed = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {allowed}{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def _coerce(owner: str, name: str, value: Any, tp: Any) -> Any:
    """``value`` checked against the annotation ``tp`` and converted to it (numpy scalars to Python ones)."""
    inner, optional = split_optional(tp)
    if optional and value is None:
        return None
    bad = TypeError(f"{owner}.{name} must be {type_name(tp)}, got {value!r} ({type(value).__name__})")
    origin = typing.get_origin(inner)
    if origin is Literal:
        allowed = typing.get_args(inner)
        if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
            raise ValueError(f"{owner}.{name} = {value!r} is invalid; allowed: {_or(allowed)}"
                             + (" or None" if optional else ""))
        return value
    if origin is tuple:
        element = typing.get_args(inner)[0]
        ok = _is_int if element is int else _is_number
        if not isinstance(value, (tuple, list)) or not all(ok(v) for v in value):
            raise TypeError(f"{owner}.{name} must be {type_name(tp)}, got {value!r}")
        return tuple(element(v) for v in value)
    if inner is bool:
        if not _is_bool(value):
            raise bad
        return bool(value)
    if inner is int:
        if not _is_int(value):
            raise bad
        return int(value)
    if inner is float:
        if not _is_number(value):
            raise bad
        return float(value)
    if inner is str:  # a path given for a str field (an output directory) is stored as its str
        if not isinstance(value, (str, os.PathLike)):
            raise bad
        return os.fspath(value)
    if isinstance(inner, type) and issubclass(inner, Config):
        if isinstance(value, dict):
            return inner.from_dict(value)
        if not isinstance(value, inner):
            raise bad
        return value
    return value


def _parse_text(said: str, text: str, tp: Any) -> Any:
    inner, optional = split_optional(tp)
    if optional and text.lower() in ("none", "null", ""):
        return None
    origin = typing.get_origin(inner)
    try:
        if inner is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if inner is int:
            return int(float(text)) if float(text).is_integer() else int(text)
        if inner is float:
            return float(text)
        if origin is tuple:
            element = typing.get_args(inner)[0]
            return tuple(element(v) for v in text.replace("(", "").replace(")", "").split(",") if v.strip())
        if isinstance(inner, type) and issubclass(inner, Config):
            raise ValueError
        return text
    except ValueError:
        raise ValueError(f"{said}: cannot read it as {type_name(tp)}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value
