"""bellman.core.config: coercion per annotation, checks, unknown keys, presets, parsing, help, JSON."""

import dataclasses
import json
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from bellman.core.config import Config, field


@dataclasses.dataclass
class Inner(Config):
    width: int = field(4, "units")


@dataclasses.dataclass
class Example(Config):
    """A config with one field of each supported annotation."""

    steps: int = field(10, "updates")
    rate: float = field(0.5, "step size")
    on: bool = field(True, "a switch")
    name: str = field("a", "a name")
    kind: Literal["x", "y"] = field("x", "one of two kinds")
    limit: float | None = field(None, "an optional bound")
    sizes: tuple[int, ...] = field((2, 3), "integer sizes")
    weights: tuple[float, ...] | None = field(None, "optional float weights")
    inner: Inner = field(default_factory=Inner, help="a nested config")

    presets = {"small": dict(steps=2, sizes=(1,))}

    def check(self) -> None:
        self.require(self.steps >= 1, "steps", "an int >= 1")


@dataclasses.dataclass
class Child(Example):
    steps: int = 20   # a new default only: the help is inherited


def test_values_are_converted_to_their_annotation():
    c = Example(steps=np.int64(3), rate=1, on=np.bool_(False), sizes=[4, 5], weights=[1, 2.5], limit=2,
                inner={"width": 8}, name=Path("runs") / "a")
    assert (c.steps, c.rate, c.on, c.sizes, c.weights, c.limit, c.inner) == (3, 1.0, False, (4, 5), (1.0, 2.5),
                                                                            2.0, Inner(8))
    assert c.name == str(Path("runs") / "a")
    assert type(c.steps) is int and type(c.rate) is float and type(c.weights[0]) is float


@pytest.mark.parametrize("changes, error, message", [
    (dict(steps=2.5), TypeError, r"Example.steps must be int, got 2.5 \(float\)"),
    (dict(steps=True), TypeError, "Example.steps must be int"),
    (dict(rate="fast"), TypeError, "Example.rate must be float"),
    (dict(on=1), TypeError, "Example.on must be bool"),
    (dict(limit="none"), TypeError, "Example.limit must be float or None"),
    (dict(sizes=(1, 2.5)), TypeError, "Example.sizes must be a tuple of ints"),
    (dict(weights=("a",)), TypeError, "Example.weights must be a tuple of floats or None"),
    (dict(inner=3), TypeError, "Example.inner must be Inner"),
    (dict(kind="z"), ValueError, r"Example.kind = 'z' is invalid; allowed: 'x' or 'y'"),
    (dict(steps=0), ValueError, r"Example.steps = 0 is invalid; allowed: an int >= 1"),
])
def test_bad_values_name_the_field(changes, error, message):
    with pytest.raises(error, match=message):
        Example(**changes)


def test_unknown_keys_suggest_the_closest_one():
    with pytest.raises(ValueError, match=r"unknown Example key\(s\): 'stpes' \(did you mean 'steps'\?\); allowed: steps"):
        Example.from_dict({"stpes": 3})
    with pytest.raises(ValueError, match="unknown Example key"):
        Example.help("nope")


def test_presets_replace_and_to_dict():
    small = Example.preset("small", rate=0.1)
    assert (small.steps, small.sizes, small.rate) == (2, (1,), 0.1)
    assert Example.preset("default") == Example() and Example.preset_names() == ["default", "small"]
    with pytest.raises(ValueError, match="Example has no preset 'big'; known presets: default, small"):
        Example.preset("big")
    assert small.replace(steps=5) == Example(steps=5, sizes=(1,), rate=0.1) and small.steps == 2
    with pytest.raises(ValueError, match="steps"):
        small.replace(steps=-1)
    d = Example(weights=(1.0,)).to_dict()
    assert d == {"steps": 10, "rate": 0.5, "on": True, "name": "a", "kind": "x", "limit": None, "sizes": [2, 3],
                 "weights": [1.0], "inner": {"width": 4}}
    assert Example.from_dict(json.loads(json.dumps(d))) == Example(weights=(1.0,))


def test_parse_reads_text_by_annotation():
    got = Example.parse(["steps=1e3", "rate=0.25", "on=no", "kind=y", "limit=none", "sizes=(8,8)",
                         "weights=1,0.5", "name=b"])
    assert got == {"steps": 1000, "rate": 0.25, "on": False, "kind": "y", "limit": None, "sizes": (8, 8),
                   "weights": (1.0, 0.5), "name": "b"}
    assert Example.parse_value("limit", "3") == 3.0
    with pytest.raises(ValueError, match=r"--set rate='fast': cannot read it as float"):
        Example.parse(["rate=fast"])
    with pytest.raises(ValueError, match="--set expects key=value"):
        Example.parse(["rate"])
    with pytest.raises(ValueError, match="unknown Example key"):
        Example.parse(["rat=1"])
    with pytest.raises(ValueError, match="cannot read it as Inner"):
        Example.parse(["inner=3"])


def test_help_comes_from_the_field_and_is_inherited():
    assert Example.help("limit") == "an optional bound"
    assert Child.help("steps") == "updates" and Child().steps == 20
