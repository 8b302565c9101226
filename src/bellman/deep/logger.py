"""Training metrics: rows of (step, episodic_return, losses..., steps_per_second) kept in memory and,
when an output folder is given, appended to `metrics.csv` and written as TensorBoard scalars."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any


class Logger:
    """Collects metric rows; `out` (optional) gets metrics.csv and TensorBoard event files.

    With `truncate_after`, rows of an existing metrics.csv beyond that step are dropped (a run resumed
    from a checkpoint rewrites what came after it).
    """

    def __init__(self, out: str | Path | None = None, truncate_after: int | None = None):
        self.rows: list[dict[str, float]] = []
        self.out = Path(out) if out is not None else None
        self._fields: list[str] | None = None
        self._writer: Any = None
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            csv_path = self.out / "metrics.csv"
            if csv_path.is_file() and csv_path.stat().st_size > 0:
                with open(csv_path, newline="") as f:
                    reader = csv.DictReader(f)
                    self._fields, kept = list(reader.fieldnames or []), list(reader)
                if truncate_after is not None:
                    kept = [r for r in kept if float(r["step"]) <= truncate_after]
                    with open(csv_path, "w", newline="") as f:
                        writer = csv.DictWriter(f, fieldnames=self._fields)
                        writer.writeheader()
                        writer.writerows(kept)

    def log(self, row: dict[str, float]) -> None:
        """Record one row; `row["step"]` is the x-axis."""
        if "step" not in row:
            raise ValueError("a metrics row needs a 'step' entry")
        self.rows.append(row)
        if self.out is None:
            return
        csv_path = self.out / "metrics.csv"
        new = self._fields is None
        if new:
            self._fields = list(row)
        with open(csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(log_dir=str(self.out))
        for k, v in row.items():
            if k != "step" and not (isinstance(v, float) and math.isnan(v)):
                self._writer.add_scalar(k, v, int(row["step"]))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None


def read_metrics(path: str | Path) -> dict[str, list[float]]:
    """metrics.csv as columns of floats (blank cells become NaN)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.csv at {path}")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} holds no rows")
    return {k: [float(r[k]) if r[k] not in ("", None) else math.nan for r in rows] for k in rows[0]}


def plot_runs(runs: list[dict[str, list[float]]], path: str | Path, title: str | None = None,
              points: int = 200) -> Path:
    """Episodic return against step: the mean over runs (seeds) with a band of +- one standard deviation,
    each run interpolated on a common grid of steps (up to the shortest run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if not runs:
        raise ValueError("no runs to plot")
    curves = []
    for i, run in enumerate(runs):
        step, ret = np.asarray(run["step"], float), np.asarray(run["episodic_return"], float)
        keep = np.isfinite(ret)
        if keep.sum() == 0:
            raise ValueError(f"run {i} has no finished episode to plot")
        curves.append((step[keep], ret[keep]))
    grid = np.linspace(max(c[0][0] for c in curves), min(c[0][-1] for c in curves), points)
    ys = np.stack([np.interp(grid, s, r) for s, r in curves])
    mean, std = ys.mean(0), ys.std(0)
    fig, ax = plt.subplots(figsize=(7, 4))
    for s, r in curves:
        ax.plot(s, r, color="C0", alpha=0.2, linewidth=0.8)
    ax.plot(grid, mean, color="C0", linewidth=2, label=f"mean of {len(runs)} run(s)")
    ax.fill_between(grid, mean - std, mean + std, color="C0", alpha=0.25, label="± 1 std")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episodic return")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    if title:
        ax.set_title(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
