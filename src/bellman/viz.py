"""Pictures of the grid world and of learning, drawn as in the course (PNG files, matplotlib Agg).

Zhao, "Mathematical Foundations of Reinforcement Learning", chapters 1-4 draw the grid world with the
forbidden cells shaded, the target marked, the state value written in each cell and the policy as an
arrow per action (length proportional to pi(a|s)) with a circle for "stay". Each function takes a
`GridWorld`, or its shape with `forbidden` and `target`, writes one PNG and returns its path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.patches import Circle, FancyArrow, Rectangle  # noqa: E402

FORBIDDEN_COLOR = "#f5b041"
TARGET_COLOR = "#5dade2"
ARROW_COLOR = "#1e8449"
ANNOTATE_MAX_CELLS = 400  # above this many cells values are drawn as a colour map, not as numbers
POLICY_MAX_CELLS = 2500  # above this many cells arrows would be unreadable
LABELLED_MAX_SIDE = 20  # grids up to this many rows and columns get row / column numbers
CELL_INCHES = 0.9
MAX_INCHES = 10.0
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # up, right, down, left as (d_row, d_col)

Grid = tuple[int, int, tuple[tuple[int, int], ...], tuple[int, int] | None]


def _layout(grid: Any, forbidden: Sequence[tuple[int, int]] | None, target: tuple[int, int] | None) -> Grid:
    """(n_rows, n_cols, forbidden cells, target cell) of a GridWorld or of a (n_rows, n_cols) shape."""
    if hasattr(grid, "n_rows") and hasattr(grid, "n_cols"):
        n_rows, n_cols = grid.n_rows, grid.n_cols
        forbidden = grid.forbidden if forbidden is None else forbidden
        target = grid.target if target is None else target
    else:
        try:
            n_rows, n_cols = (x for x in grid)
        except (TypeError, ValueError):
            raise TypeError(f"grid must be a GridWorld or an (n_rows, n_cols) pair, got {grid!r}") from None
    for name, n in (("n_rows", n_rows), ("n_cols", n_cols)):
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ValueError(f"{name} must be a positive integer, got {n!r}")
    cells = []
    for what, cell in [("forbidden cell", c) for c in (forbidden or ())] + [("target", target)]:
        if cell is None:
            continue
        try:
            r, c = (int(x) for x in cell)
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be a (row, col) pair, got {cell!r}") from None
        if not (0 <= r < n_rows and 0 <= c < n_cols):
            raise ValueError(f"{what} {(r, c)} is outside the {n_rows} x {n_cols} grid")
        cells.append((r, c))
    target_cell = cells.pop() if target is not None else None
    return int(n_rows), int(n_cols), tuple(cells), target_cell


def _values(v: Any, n_rows: int, n_cols: int) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    if v.shape not in ((n_rows * n_cols,), (n_rows, n_cols)):
        raise ValueError(
            f"v must have shape ({n_rows * n_cols},) or ({n_rows}, {n_cols}) for a {n_rows} x {n_cols} grid, "
            f"got {v.shape}"
        )
    if not np.all(np.isfinite(v)):
        raise ValueError("v must be finite; it contains NaN or inf")
    return v.reshape(n_rows, n_cols)


def _policy(policy: Any, n_rows: int, n_cols: int) -> np.ndarray:
    """The policy as (S, 5) probabilities; (S,) action indices are accepted."""
    S = n_rows * n_cols
    pi = np.asarray(policy)
    if pi.ndim == 1:
        if pi.shape != (S,) or not np.issubdtype(pi.dtype, np.integer):
            raise ValueError(
                f"a deterministic policy must be an integer array of shape ({S},), got {pi.dtype} {pi.shape}"
            )
        if pi.min() < 0 or pi.max() > 4:
            raise ValueError("policy actions must be in 0..4 (up, right, down, left, stay)")
        return np.eye(5)[pi]
    pi = pi.astype(np.float64)
    if pi.shape != (S, 5):
        raise ValueError(f"a policy must have shape ({S}, 5) or ({S},) for a {n_rows} x {n_cols} grid, got {pi.shape}")
    if not np.all(np.isfinite(pi)) or pi.min() < 0 or np.abs(pi.sum(axis=1) - 1).max() > 1e-6:
        raise ValueError("each policy row must be a probability distribution over the 5 actions")
    return pi


def _out(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"pictures are written as PNG; the path must end in .png, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _panel_inches(n_rows: int, n_cols: int) -> tuple[float, float]:
    scale = min(CELL_INCHES, MAX_INCHES / max(n_rows, n_cols))
    return max(n_cols * scale, 2.5), max(n_rows * scale, 2.5)


def _grid_figure(layout: Grid, panels: int, title: str | None) -> tuple[plt.Figure, list[Axes]]:
    """Figure of `panels` grid panels side by side with fixed margins (inches) for labels and titles."""
    w, h = _panel_inches(*layout[:2])
    left, right, top, bottom, gap = 0.35, 0.15, 0.6 + 0.3 * bool(title), 0.1, 0.5
    big = layout[0] * layout[1] > ANNOTATE_MAX_CELLS
    w_fig = left + panels * w + (panels - 1) * gap + right + 0.9 * big
    h_fig = top + h + bottom
    fig, axes = plt.subplots(1, panels, figsize=(w_fig, h_fig), squeeze=False)
    fig.subplots_adjust(left=left / w_fig, right=1 - (right + 0.9 * big) / w_fig, top=1 - top / h_fig,
                        bottom=bottom / h_fig, wspace=gap / w)
    if title:
        fig.suptitle(title, y=1 - 0.12 / h_fig, va="top")
    return fig, list(axes[0])


def _draw_grid(ax: Axes, layout: Grid) -> None:
    """Cells with row 0 at the top, forbidden cells shaded, the target filled."""
    n_rows, n_cols, forbidden, target = layout
    ax.set_xlim(0, n_cols)
    ax.set_ylim(n_rows, 0)
    ax.set_aspect("equal")
    for r, c in forbidden:
        ax.add_patch(Rectangle((c, r), 1, 1, color=FORBIDDEN_COLOR, zorder=1))
    if target is not None:
        ax.add_patch(Rectangle((target[1], target[0]), 1, 1, color=TARGET_COLOR, zorder=1))
    if max(n_rows, n_cols) <= 50:
        ax.set_xticks(np.arange(n_cols + 1), minor=True)
        ax.set_yticks(np.arange(n_rows + 1), minor=True)
        ax.grid(which="minor", color="0.6", linewidth=0.8)
    small = max(n_rows, n_cols) <= LABELLED_MAX_SIDE
    ax.set_xticks(np.arange(n_cols) + 0.5 if small else [])
    ax.set_yticks(np.arange(n_rows) + 0.5 if small else [])
    if small:
        ax.set_xticklabels(range(n_cols))
        ax.set_yticklabels(range(n_rows))
    ax.tick_params(which="both", length=0)
    ax.xaxis.tick_top()


def _panel_title(ax: Axes, layout: Grid, text: str) -> None:
    """A panel's title, clear of the column numbers along the top of a labelled grid."""
    ax.set_title(text, pad=22 if max(layout[:2]) <= LABELLED_MAX_SIDE else 6)


def _draw_values(ax: Axes, layout: Grid, v: np.ndarray, decimals: int) -> None:
    n_rows, n_cols = layout[:2]
    if n_rows * n_cols > ANNOTATE_MAX_CELLS:
        image = ax.imshow(v, cmap="viridis", extent=(0, n_cols, n_rows, 0), zorder=0, interpolation="nearest")
        ax.figure.colorbar(image, cax=ax.inset_axes((1.03, 0.0, 0.04, 1.0)))
    else:
        size = 11 if max(n_rows, n_cols) <= 8 else 7
        for r in range(n_rows):
            for c in range(n_cols):
                ax.text(c + 0.5, r + 0.5, f"{v[r, c]:.{decimals}f}", ha="center", va="center", fontsize=size, zorder=3)
    _draw_grid(ax, layout)


def _draw_policy(ax: Axes, layout: Grid, pi: np.ndarray) -> None:
    """An arrow of length 0.45 pi(a|s) for each move, a circle of radius 0.1 pi(stay|s) for staying."""
    n_rows, n_cols = layout[:2]
    _draw_grid(ax, layout)
    if n_rows * n_cols > POLICY_MAX_CELLS:
        ax.text(n_cols / 2, n_rows / 2, "policy not drawn\n(grid too large)", ha="center", va="center")
        return
    width = 0.025
    for s in range(n_rows * n_cols):
        r, c = divmod(s, n_cols)
        x, y = c + 0.5, r + 0.5
        for a, (dr, dc) in enumerate(MOVES):
            length = 0.45 * pi[s, a]
            if length > 1e-3:
                head_length = min(0.1, 0.4 * length)
                ax.add_patch(FancyArrow(x, y, dc * length, dr * length, width=width, head_length=head_length,
                                        head_width=max(1.5 * width, 1.8 * head_length), length_includes_head=True,
                                        color=ARROW_COLOR, zorder=4))
        if pi[s, 4] > 1e-3:
            ax.add_patch(Circle((x, y), 0.1 * pi[s, 4], fill=False, color=ARROW_COLOR, linewidth=1.5,
                                zorder=4))


def _save(fig: plt.Figure, path: Path, dpi: int) -> Path:
    fig.savefig(path, dpi=dpi, format="png")
    plt.close(fig)
    return path


def _check_dpi(dpi: int) -> None:
    if not isinstance(dpi, (int, np.integer)) or dpi < 10:
        raise ValueError(f"dpi must be an integer >= 10, got {dpi!r}")


def plot_values(
    grid: Any,
    v: Any,
    path: str | Path,
    forbidden: Sequence[tuple[int, int]] | None = None,
    target: tuple[int, int] | None = None,
    title: str | None = None,
    decimals: int = 1,
    dpi: int = 100,
) -> Path:
    """The state values v (S,) or (n_rows, n_cols) written in the cells of the grid."""
    _check_dpi(dpi)
    layout = _layout(grid, forbidden, target)
    values = _values(v, *layout[:2])
    fig, (ax,) = _grid_figure(layout, 1, None)
    _draw_values(ax, layout, values, decimals)
    _panel_title(ax, layout, title or "state values")
    return _save(fig, _out(path), dpi)


def plot_policy(
    grid: Any,
    policy: Any,
    path: str | Path,
    forbidden: Sequence[tuple[int, int]] | None = None,
    target: tuple[int, int] | None = None,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """The policy, (S, 5) probabilities or (S,) actions, as arrows (length ~ pi(a|s)) and circles (stay)."""
    _check_dpi(dpi)
    layout = _layout(grid, forbidden, target)
    pi = _policy(policy, *layout[:2])
    fig, (ax,) = _grid_figure(layout, 1, None)
    _draw_policy(ax, layout, pi)
    _panel_title(ax, layout, title or "policy")
    return _save(fig, _out(path), dpi)


def plot_values_and_policy(
    grid: Any,
    v: Any,
    policy: Any,
    path: str | Path,
    forbidden: Sequence[tuple[int, int]] | None = None,
    target: tuple[int, int] | None = None,
    title: str | None = None,
    decimals: int = 1,
    dpi: int = 100,
) -> Path:
    """The policy (left) and its state values (right) side by side, as in the course's figures."""
    _check_dpi(dpi)
    layout = _layout(grid, forbidden, target)
    values = _values(v, *layout[:2])
    pi = _policy(policy, *layout[:2])
    fig, (ax_pi, ax_v) = _grid_figure(layout, 2, title)
    _draw_policy(ax_pi, layout, pi)
    _panel_title(ax_pi, layout, "policy")
    _draw_values(ax_v, layout, values, decimals)
    _panel_title(ax_v, layout, "state values")
    return _save(fig, _out(path), dpi)


def moving_average(x: Any, window: int) -> np.ndarray:
    """Mean of the last `window` values at each point (fewer at the start), same length as x."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x must be one-dimensional, got shape {x.shape}")
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    csum = np.concatenate([[0.0], np.cumsum(x)])
    i = np.arange(1, x.size + 1)
    lo = np.maximum(i - window, 0)
    return (csum[i] - csum[lo]) / (i - lo)


def _curves(curves: Any, what: str) -> dict[str, np.ndarray]:
    items = curves.items() if isinstance(curves, Mapping) else [("", curves)]
    out = {}
    for label, y in items:
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 1 or y.size == 0:
            raise ValueError(f"each {what} curve must be a non-empty 1-D array, got shape {y.shape} for {label!r}")
        if not np.all(np.isfinite(y)):
            raise ValueError(f"the {what} curve {label!r} contains NaN or inf")
        out[str(label)] = y
    if not out:
        raise ValueError(f"no {what} curves given")
    return out


def plot_learning_curves(
    returns: Any,
    path: str | Path,
    lengths: Any = None,
    window: int = 50,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Per-episode returns (and lengths, in a second panel) with their moving average over `window` episodes.

    `returns` (and `lengths`) is a 1-D array or a mapping label -> 1-D array; several curves share an axis.
    """
    _check_dpi(dpi)
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    panels = [("return", _curves(returns, "return"))]
    if lengths is not None:
        panels.append(("length", _curves(lengths, "length")))
    path = _out(path)
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 0.4 + 3.0 * len(panels)), sharex=True, squeeze=False)
    fig.subplots_adjust(left=0.11, right=0.97, top=1 - 0.4 / (0.4 + 3.0 * len(panels)),
                        bottom=0.55 / (0.4 + 3.0 * len(panels)), hspace=0.12)
    for ax, (what, curves) in zip(axes[:, 0], panels):
        for k, (label, y) in enumerate(curves.items()):
            color = f"C{k}"
            episodes = np.arange(1, y.size + 1)
            ax.plot(episodes, y, color=color, alpha=0.25, linewidth=0.8)
            ax.plot(episodes, moving_average(y, window), color=color, linewidth=1.8,
                    label=f"{label} (mean of {window})".strip() if label else f"mean of {window}")
        ax.set_ylabel(f"episode {what}")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    axes[-1, 0].set_xlabel("episode")
    if title:
        axes[0, 0].set_title(title)
    return _save(fig, path, dpi)


def plot_runs(runs: Sequence[Mapping[str, Sequence[float]]], path: str | Path, title: str | None = None,
              points: int = 200, dpi: int = 100) -> Path:
    """Episodic return against environment step for runs of `metrics.csv` (`bellman.core.metrics.read_metrics`):
    the mean over runs (e.g. seeds) with a band of +- one standard deviation, each run interpolated on a
    common grid of steps (up to the shortest run)."""
    _check_dpi(dpi)
    if not runs:
        raise ValueError("no runs to plot")
    curves = []
    for i, run in enumerate(runs):
        if "step" not in run or "episodic_return" not in run:
            raise ValueError(f"run {i} has no step / episodic_return columns (is it a deep-RL metrics.csv?)")
        step, ret = np.asarray(run["step"], float), np.asarray(run["episodic_return"], float)
        keep = np.isfinite(ret)
        if keep.sum() == 0:
            raise ValueError(f"run {i} has no finished episode to plot")
        curves.append((step[keep], ret[keep]))
    grid = np.linspace(max(c[0][0] for c in curves), min(c[0][-1] for c in curves), points)
    ys = np.stack([np.interp(grid, s, r) for s, r in curves])
    mean, std = ys.mean(0), ys.std(0)
    path = _out(path)
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
    return _save(fig, path, dpi)
