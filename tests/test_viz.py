"""bellman.viz: files are written, are valid PNGs of the expected size, and bad inputs raise."""

import struct

import matplotlib.image
import numpy as np
import pytest

from bellman import viz
from bellman.envs.gridworld import GridWorld
from bellman.planning import value_iteration

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) from the IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def has_color(path, hex_color):
    rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    image = matplotlib.image.imread(path)[..., :3]
    return bool(np.any(np.all(np.abs(image - rgb) < 1 / 255 + 1e-6, axis=-1)))


@pytest.fixture(scope="module")
def course():
    env = GridWorld()
    return env, value_iteration(env.mdp)


def test_values_picture_size_and_colors(tmp_path, course):
    env, result = course
    path = viz.plot_values(env, result.v, tmp_path / "v.png")
    assert path == tmp_path / "v.png"
    assert png_size(path) == (500, 520)  # 5 cells x 0.9 in + margins 0.5 in wide, 0.7 in high, 100 dpi
    assert has_color(path, viz.FORBIDDEN_COLOR) and has_color(path, viz.TARGET_COLOR)
    bare = viz.plot_values((5, 5), result.v.reshape(5, 5), tmp_path / "bare.png", dpi=50)
    assert png_size(bare) == (250, 260)
    assert not has_color(bare, viz.FORBIDDEN_COLOR) and not has_color(bare, viz.TARGET_COLOR)


def test_policy_pictures_deterministic_and_stochastic(tmp_path, course):
    env, result = course
    deterministic = viz.plot_policy(env, result.actions, tmp_path / "a.png")
    assert png_size(deterministic) == (500, 520)
    assert has_color(deterministic, viz.ARROW_COLOR)
    uniform = np.full((25, 5), 0.2)
    stochastic = viz.plot_policy((5, 5), uniform, tmp_path / "sub" / "u.png", forbidden=[(1, 1)], target=(4, 4))
    assert stochastic.exists() and has_color(stochastic, viz.ARROW_COLOR)
    assert has_color(stochastic, viz.FORBIDDEN_COLOR)


def test_values_and_policy_side_by_side(tmp_path, course):
    env, result = course
    path = viz.plot_values_and_policy(env, result.v, result.policy, tmp_path / "vp.png", title="v*")
    assert png_size(path) == (1000, 550)  # two 4.5 in panels, a 0.5 in gap, margins; 0.3 in more for the title


def test_large_grid_draws_a_colour_map(tmp_path):
    env = GridWorld(60, 60)
    v = np.linspace(0, 1, 3600)
    path = viz.plot_values_and_policy(env, v, np.zeros(3600, dtype=int), tmp_path / "big.png")
    width, height = png_size(path)
    assert width > height > 400


def test_learning_curves(tmp_path):
    rng = np.random.default_rng(0)
    one = viz.plot_learning_curves(rng.normal(size=100), tmp_path / "one.png", window=10)
    assert png_size(one) == (700, 340)
    two = viz.plot_learning_curves({"sarsa": rng.normal(size=80), "q-learning": rng.normal(size=120)},
                                   tmp_path / "two.png", lengths={"sarsa": np.arange(80), "q-learning": np.ones(120)})
    assert png_size(two) == (700, 640)


def test_moving_average_exact():
    np.testing.assert_allclose(viz.moving_average([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(viz.moving_average([3, 0, 3], 10), [3, 1.5, 2])


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda p: viz.plot_values((5, 5), np.zeros(24), p), ValueError),
        (lambda p: viz.plot_values((5, 5), np.full(25, np.nan), p), ValueError),
        (lambda p: viz.plot_values((5, 5), np.zeros(25), p, target=(5, 0)), ValueError),
        (lambda p: viz.plot_values((5, 5), np.zeros(25), p, forbidden=[(1,)]), ValueError),
        (lambda p: viz.plot_values((0, 5), np.zeros(0), p), ValueError),
        (lambda p: viz.plot_values("grid", np.zeros(25), p), TypeError),
        (lambda p: viz.plot_values((5, 5), np.zeros(25), p.with_suffix(".jpg")), ValueError),
        (lambda p: viz.plot_values((5, 5), np.zeros(25), p, dpi=0), ValueError),
        (lambda p: viz.plot_policy((5, 5), np.full((25, 5), 0.3), p), ValueError),
        (lambda p: viz.plot_policy((5, 5), np.full((25, 4), 0.25), p), ValueError),
        (lambda p: viz.plot_policy((5, 5), np.full(25, 5), p), ValueError),
        (lambda p: viz.plot_policy((5, 5), np.full(25, 0.5), p), ValueError),
        (lambda p: viz.plot_learning_curves([], p), ValueError),
        (lambda p: viz.plot_learning_curves({"a": [1.0, np.inf]}, p), ValueError),
        (lambda p: viz.plot_learning_curves([1.0, 2.0], p, window=0), ValueError),
        (lambda p: viz.plot_learning_curves(np.ones((2, 2)), p), ValueError),
        (lambda p: viz.moving_average([1.0], 0), ValueError),
    ],
)
def test_bad_inputs_raise(tmp_path, call, error):
    path = tmp_path / "x.png"
    with pytest.raises(error):
        call(path)
    assert not path.exists()
