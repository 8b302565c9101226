"""The progress bar every training loop shows (rich): steps done of the total, elapsed time, rate and the
latest metrics."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class Progress:
    """``with Progress(total, completed, enabled) as bar: bar.advance(n, reward=0.5, loss=...)``."""

    def __init__(self, total: int, completed: int = 0, enabled: bool = True, unit: str = "step",
                 description: str = "train"):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
                                   TimeElapsedColumn)

        self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn(f"{unit}s"), TimeElapsedColumn(), TextColumn("{task.fields[stats]}"),
                                 disable=not enabled, transient=False)
        self._task = self._bar.add_task(description, total=total, completed=completed, stats="")

    def advance(self, n: int = 1, **stats: float) -> None:
        """Move ``n`` steps on; ``stats`` (name -> number) are shown beside the bar."""
        shown = " ".join(f"{k} {v:.3g}" for k, v in stats.items())
        self._bar.update(self._task, advance=n, **({"stats": shown} if stats else {}))

    def __enter__(self) -> Progress:
        self._bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._bar.stop()


def track(items: Iterable[T], total: int, enabled: bool = True, description: str = "", unit: str = "step") -> Iterator[T]:
    """Yield ``items`` while a ``Progress`` bar counts them (one step each)."""
    with Progress(total, 0, enabled, unit, description) as bar:
        for item in items:
            yield item
            bar.advance(1)
