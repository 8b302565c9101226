"""Training metrics: rows of scalars keyed by ``step``, kept in memory and, with an output folder, written
to ``metrics.csv`` and to TensorBoard event files in ``tb/``.

A run resumed from a checkpoint at step s reopens the folder with ``start_step=s``: CSV rows after s are
dropped and TensorBoard purges its events after s, so the log of a resumed run equals that of an
uninterrupted one. A row with a metric not seen before rewrites the CSV with the wider header (atomically);
NaN is written as an empty cell and not sent to TensorBoard.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> list[str]:
    """Write ``rows`` atomically with the union of their keys as header; returns the header."""
    fields = list(dict.fromkeys(k for r in rows for k in r)) or ["step"]
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return fields


def _cell(v: Any) -> Any:
    return "" if isinstance(v, float) and math.isnan(v) else v


class Metrics:
    """Collects metric rows; ``out`` (optional) gets ``metrics.csv`` and ``tb/`` (see the module docstring)."""

    def __init__(self, out: str | os.PathLike | None = None, start_step: int = 0):
        self.rows: list[dict[str, float]] = []
        self.out = Path(out) if out is not None else None
        self._fields: list[str] = []
        self._writer: Any = None
        self._start_step = start_step
        if self.out is None:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "metrics.csv"
        if path.is_file() and path.stat().st_size > 0:
            with path.open(newline="") as f:
                kept = [r for r in csv.DictReader(f) if r.get("step") and float(r["step"]) <= start_step]
            self._fields = _write_csv(path, kept) if kept else []
            if not kept:
                path.unlink()

    def log(self, row: dict[str, float]) -> None:
        """Record one row; ``row["step"]`` is the x-axis."""
        if "step" not in row:
            raise ValueError("a metrics row needs a 'step' entry")
        self.rows.append(row)
        if self.out is None:
            return
        path = self.out / "metrics.csv"
        if self._fields and set(row) <= set(self._fields):
            with path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=self._fields, restval="").writerow({k: _cell(v) for k, v in row.items()})
        else:  # the first row, or new metric names: rewrite with the wider header
            old: list[dict[str, Any]] = []
            if self._fields and path.is_file():
                with path.open(newline="") as f:
                    old = list(csv.DictReader(f))
            self._fields = _write_csv(path, old + [{k: _cell(v) for k, v in row.items()}])
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(log_dir=str(self.out / "tb"), purge_step=self._start_step + 1)
        for k, v in row.items():
            if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                self._writer.add_scalar(k, v, int(row["step"]))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None

    def __enter__(self) -> Metrics:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_metrics(path: str | os.PathLike) -> dict[str, list[float]]:
    """``metrics.csv`` (or the folder holding it) as columns of floats; blank cells become NaN."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.csv at {path}")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} holds no rows")
    def number(text: str | None, key: str, line: int) -> float:
        if text in ("", None):
            return math.nan
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{path}, line {line}: {key} = {text!r} is not a number") from None
    return {k: [number(r[k], k, i + 2) for i, r in enumerate(rows)] for k in rows[0]}
