"""Stochastic approximation: incremental mean, Robbins-Monro, SGD / BGD / MBGD.

Zhao 2025, "Mathematical Foundations of Reinforcement Learning", chapter 6; Robbins & Monro, "A Stochastic
Approximation Method" (1951). Every function returns all iterates w_1, w_2, ..., w_{K+1} (first axis)
so that convergence can be plotted.

Step sizes are a_k = c / k^power with c > 0 and 1/2 < power <= 1: exactly the members of this family
with sum_k a_k = inf (power <= 1) and sum_k a_k^2 < inf (power > 1/2), the Robbins-Monro conditions.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from bellman.core.config import check_int

GradientFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def step_sizes(iterations: int, c: float = 1.0, power: float = 1.0) -> np.ndarray:
    """a_k = c / k^power for k = 1..iterations, validated against the Robbins-Monro conditions."""
    check_int("iterations", iterations)
    if not np.isfinite(c) or c <= 0:
        raise ValueError(f"the step-size scale c must be a positive number, got {c}")
    if not 0.5 < power <= 1.0:
        raise ValueError(
            f"power must be in (1/2, 1] so that a_k = c / k^power has sum a_k = inf and sum a_k^2 < inf "
            f"(the Robbins-Monro conditions), got {power}"
        )
    return c / np.arange(1, iterations + 1, dtype=np.float64) ** power


def incremental_mean(x: Any, w1: Any = None) -> np.ndarray:
    """w_{k+1} = w_k - (1/k)(w_k - x_k) (Zhao, section 6.1), so that w_{k+1} = mean(x_1..x_k).

    x: samples, shape (K,) or (K, d). w1: the (arbitrary) start, default 0. Returns w of shape
    (K+1,) or (K+1, d) with w[0] = w1 and w[k] the mean of the first k samples.
    """
    x = _samples(x)
    w = np.empty((len(x) + 1,) + x.shape[1:])
    w[0] = _start(w1, x.shape[1:])
    for k in range(1, len(x) + 1):
        w[k] = w[k - 1] - (1.0 / k) * (w[k - 1] - x[k - 1])
    return w


def robbins_monro(
    g_tilde: Callable[[np.ndarray, np.random.Generator], Any],
    w1: Any,
    iterations: int = 1000,
    c: float = 1.0,
    power: float = 1.0,
    seed: int | None = None,
) -> np.ndarray:
    """Robbins-Monro root finding of g(w) = 0 from noisy observations (Zhao, section 6.2):

        w_{k+1} = w_k - a_k g~(w_k, eta_k),  a_k = c / k^power.

    g_tilde(w, rng) returns one noisy observation g(w) + eta of g at w, drawing its noise from rng
    (seeded by `seed`). g should be increasing (or its gradient positive definite) near the root.
    Returns the iterates w_1..w_{K+1}.
    """
    if not callable(g_tilde):
        raise TypeError(f"g_tilde must be a callable (w, rng) -> noisy g(w), got {type(g_tilde).__name__}")
    a = step_sizes(iterations, c, power)
    rng = np.random.default_rng(seed)
    w0 = np.asarray(w1, dtype=np.float64)
    w = np.empty((iterations + 1,) + w0.shape)
    w[0] = w0
    for k in range(iterations):
        g = np.asarray(g_tilde(w[k], rng), dtype=np.float64)
        if g.shape != w0.shape or not np.all(np.isfinite(g)):
            raise ValueError(
                f"g_tilde returned {g!r} at iteration {k + 1}; it must return a finite value of shape {w0.shape}"
            )
        w[k + 1] = w[k] - a[k] * g
    return w


def mean_estimation_gradient(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of f(w, x) = ||w - x||^2 / 2 averaged over a batch x (first axis): w - mean(x)."""
    return w - x.mean(axis=0)


def gradient_descent(
    x: Any,
    w1: Any = None,
    iterations: int = 1000,
    method: str = "sgd",
    batch_size: int = 1,
    c: float = 1.0,
    power: float = 1.0,
    grad: GradientFn = mean_estimation_gradient,
    seed: int | None = None,
) -> np.ndarray:
    """Minimise J(w) = E[f(w, X)] with samples {x_i} (Zhao, section 6.4):

        w_{k+1} = w_k - a_k (1/m) sum_{i in I_k} grad_w f(w_k, x_i),  a_k = c / k^power.

    method "bgd": I_k is every sample (batch gradient descent, m = n); "mbgd": m = batch_size samples
    drawn uniformly with replacement; "sgd": one such sample (m = 1). `grad(w, batch)` is the batch-mean
    gradient, by default that of the mean-estimation example f = ||w - x||^2 / 2, whose minimiser is
    the sample mean. x: shape (n,) or (n, d). Returns the iterates w_1..w_{K+1}.
    """
    x = _samples(x)
    if method not in ("sgd", "bgd", "mbgd"):
        raise ValueError(f"method must be 'sgd', 'bgd' or 'mbgd', got {method!r}")
    if method == "mbgd" and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                             or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not callable(grad):
        raise TypeError(f"grad must be a callable (w, batch) -> gradient, got {type(grad).__name__}")
    m = {"sgd": 1, "bgd": len(x), "mbgd": batch_size}[method]
    a = step_sizes(iterations, c, power)
    rng = np.random.default_rng(seed)
    w = np.empty((iterations + 1,) + x.shape[1:])
    w[0] = _start(w1, x.shape[1:])
    for k in range(iterations):
        batch = x if method == "bgd" else x[rng.integers(len(x), size=m)]
        w[k + 1] = w[k] - a[k] * grad(w[k], batch)
        if not np.all(np.isfinite(w[k + 1])):
            raise FloatingPointError(
                f"w diverged to {w[k + 1]} at iteration {k + 1}; use smaller step sizes (c) or a closer w1"
            )
    return w


def _samples(x: Any) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (1, 2) or len(x) == 0:
        raise ValueError(f"samples must be a non-empty array of shape (K,) or (K, d), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("samples must be finite (no NaN or inf)")
    return x


def _start(w1: Any, shape: tuple[int, ...]) -> np.ndarray:
    w = np.zeros(shape) if w1 is None else np.asarray(w1, dtype=np.float64)
    if w.shape != shape or not np.all(np.isfinite(w)):
        raise ValueError(f"w1 must be a finite value of shape {shape}, got {w1!r}")
    return w
