"""Stochastic approximation: incremental mean, Robbins-Monro, SGD / BGD / MBGD (Zhao, chapter 6)."""

import numpy as np
import pytest

from bellman.sa import gradient_descent, incremental_mean, robbins_monro, step_sizes


def test_incremental_mean_is_the_running_mean_at_every_k():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=500)
    w = incremental_mean(x, w1=123.0)
    assert w.shape == (501,) and w[0] == 123.0
    expected = np.array([np.mean(x[:k]) for k in range(1, 501)])
    np.testing.assert_allclose(w[1:], expected, rtol=0, atol=1e-12)
    # on integers of modest size every running mean is exact in floating point
    ints = np.array([4.0, 8.0, 0.0, 4.0, 9.0, 5.0, 12.0, 6.0])
    assert incremental_mean(ints)[1:].tolist() == [4.0, 6.0, 4.0, 4.0, 5.0, 5.0, 6.0, 6.0]


def test_incremental_mean_of_vectors():
    x = np.random.default_rng(1).uniform(-1, 1, size=(200, 3))
    w = incremental_mean(x)
    assert w.shape == (201, 3)
    np.testing.assert_array_equal(w[0], np.zeros(3))
    np.testing.assert_allclose(w[1:], np.cumsum(x, axis=0) / np.arange(1, 201)[:, None], atol=1e-12)


def test_step_sizes_follow_c_over_k_to_the_power():
    np.testing.assert_allclose(step_sizes(4, c=2.0, power=1.0), [2.0, 1.0, 2 / 3, 0.5])
    np.testing.assert_allclose(step_sizes(3, power=0.75), [1.0, 2**-0.75, 3**-0.75])


@pytest.mark.parametrize("power", [0.5, 0.3, 1.01, 2.0, 0.0])
def test_step_sizes_violating_robbins_monro_conditions_are_refused(power):
    with pytest.raises(ValueError, match="Robbins-Monro"):
        step_sizes(10, power=power)


@pytest.mark.parametrize("c", [0.0, -1.0, np.inf])
def test_step_size_scale_must_be_positive(c):
    with pytest.raises(ValueError, match="positive"):
        step_sizes(10, c=c)


def test_robbins_monro_finds_the_root_of_tanh():
    # g(w) = tanh(w - 1) has its root at w* = 1; observations carry N(0, 1) noise (Zhao, section 6.2.1)
    w = robbins_monro(lambda w, rng: np.tanh(w - 1.0) + rng.normal(), w1=3.0, iterations=5000, seed=0)
    assert w.shape == (5001,) and w[0] == 3.0
    assert abs(w[-1] - 1.0) < 0.05


def test_robbins_monro_on_a_vector_root():
    # g(w) = w - (1, -2) + noise: the root is the mean (1, -2)
    root = np.array([1.0, -2.0])
    w = robbins_monro(lambda w, rng: w - root + rng.normal(size=2), w1=np.zeros(2), iterations=4000,
                      power=0.8, seed=1)
    np.testing.assert_allclose(w[-1], root, atol=0.1)


def test_robbins_monro_with_one_over_k_is_the_incremental_mean_of_its_samples():
    # g~(w, x) = w - x with a_k = 1/k turns Robbins-Monro into the incremental mean
    w = robbins_monro(lambda w, rng: w - rng.random(), w1=0.0, iterations=300, seed=5)
    x = np.random.default_rng(5).random(300)
    np.testing.assert_allclose(w, incremental_mean(x), atol=1e-14)


def test_robbins_monro_is_seeded():
    g = lambda w, rng: np.tanh(w) + rng.normal()  # noqa: E731
    np.testing.assert_array_equal(robbins_monro(g, 2.0, 50, seed=3), robbins_monro(g, 2.0, 50, seed=3))
    assert not np.array_equal(robbins_monro(g, 2.0, 50, seed=3), robbins_monro(g, 2.0, 50, seed=4))


def test_robbins_monro_rejects_bad_observations():
    with pytest.raises(ValueError, match="iteration 1"):
        robbins_monro(lambda w, rng: np.nan, 0.0, 10)
    with pytest.raises(TypeError, match="callable"):
        robbins_monro(3.0, 0.0, 10)


X = np.random.default_rng(7).uniform(-10, 10, size=(100, 2))


def test_bgd_reaches_the_sample_mean():
    # with a_1 = 1 the first full-batch step lands exactly on the sample mean, and stays there
    w = gradient_descent(X, w1=[50.0, 50.0], iterations=20, method="bgd")
    np.testing.assert_allclose(w[1:], np.broadcast_to(X.mean(axis=0), (20, 2)), atol=1e-12)
    # a slower schedule converges as well
    w = gradient_descent(X, w1=[50.0, 50.0], iterations=2000, method="bgd", c=0.5, power=0.6)
    np.testing.assert_allclose(w[-1], X.mean(axis=0), atol=1e-6)


@pytest.mark.parametrize("method, batch_size, tol", [("sgd", 1, 0.2), ("mbgd", 10, 0.08), ("mbgd", 50, 0.04)])
def test_sgd_and_mbgd_converge_to_the_sample_mean(method, batch_size, tol):
    w = gradient_descent(X, w1=[50.0, 50.0], iterations=5000, method=method, batch_size=batch_size, seed=0)
    assert np.abs(w[-1] - X.mean(axis=0)).max() < tol
    # larger batches reduce the noise of the estimate: error far below the spread of the samples
    assert np.linalg.norm(w[-1] - X.mean(axis=0)) < 0.05 * np.linalg.norm(X.std(axis=0))


def test_sgd_with_one_over_k_is_the_incremental_mean_of_the_drawn_samples():
    w = gradient_descent(X, iterations=500, method="sgd", seed=2)
    rng = np.random.default_rng(2)
    drawn = np.array([X[rng.integers(len(X), size=1)[0]] for _ in range(500)])
    np.testing.assert_allclose(w, incremental_mean(drawn), atol=1e-12)


def test_gradient_descent_on_a_custom_objective():
    # J(w) = E[(w - X)^4 / 4] for symmetric X is minimised at its mean 0
    x = np.random.default_rng(3).choice([-1.0, 1.0], size=1000)
    cubic = lambda w, b: np.mean((w - b) ** 3)  # noqa: E731
    w = gradient_descent(x, w1=0.8, iterations=3000, method="mbgd", batch_size=20, c=0.2, grad=cubic, seed=0)
    assert abs(w[-1] - x.mean()) < 0.1
    # too large a first step overshoots and diverges: a clear error, not NaNs
    with pytest.raises(FloatingPointError, match="diverged"), np.errstate(over="ignore", invalid="ignore"):
        gradient_descent(x, w1=2.0, iterations=3000, method="mbgd", batch_size=20, grad=cubic, seed=0)


def test_gradient_descent_is_seeded():
    a = gradient_descent(X, iterations=100, seed=1)
    np.testing.assert_array_equal(a, gradient_descent(X, iterations=100, seed=1))
    assert not np.array_equal(a, gradient_descent(X, iterations=100, seed=2))


def test_gradient_descent_bad_inputs():
    with pytest.raises(ValueError, match="method"):
        gradient_descent(X, method="adam")
    with pytest.raises(ValueError, match="batch_size"):
        gradient_descent(X, method="mbgd", batch_size=0)
    with pytest.raises(ValueError, match="w1"):
        gradient_descent(X, w1=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="samples"):
        gradient_descent(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="finite"):
        gradient_descent([1.0, np.nan])
    with pytest.raises(ValueError, match="iterations"):
        gradient_descent(X, iterations=0)
    with pytest.raises(ValueError, match="Robbins-Monro"):
        gradient_descent(X, power=0.4)
