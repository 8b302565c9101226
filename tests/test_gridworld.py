import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from bellman.envs import GridWorld

UP, RIGHT, DOWN, LEFT, STAY = range(5)


def test_registered_and_passes_the_env_checker():
    env = gym.make("bellman/GridWorld-v0")
    check_env(env.unwrapped, skip_render_check=True)
    check_env(GridWorld(3, 4, slip=0.2, terminal_target=True, max_steps=10), skip_render_check=True)


def test_env_checker_with_the_render_check_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "No render fps was declared" without metadata["render_fps"]
        for mode in (None, "ansi"):
            check_env(gym.make("bellman/GridWorld-v0", render_mode=mode).unwrapped)


def test_default_is_the_course_grid():
    env = GridWorld()
    assert env.forbidden == ((1, 1), (1, 2), (2, 2), (3, 1), (3, 3), (4, 1))
    assert env.target == (3, 2) and env.mdp.n_states == 25 and env.mdp.n_actions == 5
    assert env.mdp.gamma == 0.9


def test_transition_semantics():
    env = GridWorld()
    s = env.state_of
    ns, r = env.next_state, env.reward
    # off the grid: stay, r_boundary
    assert (ns[s((0, 0)), UP], r[s((0, 0)), UP]) == (s((0, 0)), -1)
    assert (ns[s((0, 0)), LEFT], r[s((0, 0)), LEFT]) == (s((0, 0)), -1)
    # into a forbidden cell: the agent enters it, r_forbidden; staying on it too
    assert (ns[s((0, 1)), DOWN], r[s((0, 1)), DOWN]) == (s((1, 1)), -1)
    assert (ns[s((1, 1)), STAY], r[s((1, 1)), STAY]) == (s((1, 1)), -1)
    # into and staying on the target: r_target
    assert (ns[s((2, 1)), DOWN], r[s((2, 1)), DOWN]) == (s((3, 1)), -1)
    assert (ns[s((4, 2)), UP], r[s((4, 2)), UP]) == (s((3, 2)), 1)
    assert (ns[s((3, 2)), STAY], r[s((3, 2)), STAY]) == (s((3, 2)), 1)
    # an ordinary move, and the boundary seen from the far corner
    assert (ns[s((0, 0)), RIGHT], r[s((0, 0)), RIGHT]) == (s((0, 1)), 0)
    assert (ns[s((4, 4)), DOWN], r[s((4, 4)), DOWN]) == (s((4, 4)), -1)


def test_step_follows_the_model():
    env = GridWorld()
    rng = np.random.default_rng(0)
    s, _ = env.reset(seed=0)
    for _ in range(200):
        a = int(rng.integers(5))
        s2, r, terminated, truncated, _ = env.step(a)
        assert env.mdp.dense_P()[s, a, s2] == 1.0 and env.mdp.R[s, a] == r
        assert not terminated and not truncated
        s = s2


def test_blocking_forbidden_cells():
    env = GridWorld(block_forbidden=True)
    s = env.state_of
    assert (env.next_state[s((0, 1)), DOWN], env.reward[s((0, 1)), DOWN]) == (s((0, 1)), -1)


def test_terminal_target_ends_episode_and_is_absorbing_in_the_model():
    env = GridWorld(terminal_target=True)
    env.reset(options={"cell": (4, 2)})
    _, r, terminated, _, _ = env.step(UP)
    assert r == 1 and terminated
    t = env.target_state
    assert np.all(env.mdp.R[t] == 0) and np.all(env.mdp.dense_P()[t, :, t] == 1)


def test_slip_model_mixes_in_a_uniform_action():
    env = GridWorld(slip=0.25)
    P = env.mdp.dense_P()
    s = env.state_of((0, 0))
    # right: 0.75 intended + 0.25/5 for the slip to right; up/left/stay keep the agent in place
    assert P[s, RIGHT, env.state_of((0, 1))] == pytest.approx(0.75 + 0.05)
    assert P[s, RIGHT, s] == pytest.approx(3 * 0.05)
    assert env.mdp.R[s, RIGHT] == pytest.approx(0.75 * 0 + 0.25 * np.mean([-1, 0, 0, -1, 0]))
    counts = np.zeros(25)
    env.reset(seed=3)
    for _ in range(4000):
        env.reset(options={"state": s})
        counts[env.step(RIGHT)[0]] += 1
    assert counts[env.state_of((0, 1))] / 4000 == pytest.approx(0.8, abs=0.03)


def test_truncation_after_max_steps():
    env = GridWorld(max_steps=3)
    env.reset()
    assert [env.step(STAY)[3] for _ in range(3)] == [False, False, True]


def test_large_grid_model_is_sparse():
    env = GridWorld(1000, 1000)
    assert env.mdp.is_sparse and env.mdp.P.nnz == 5 * 10**6
    assert env.target == (999, 999)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(target=(1, 1)), "target .* forbidden"),
        (dict(target=(5, 0)), "outside the 5 x 5 grid"),
        (dict(forbidden=[(0, 9)]), "forbidden cell"),
        (dict(n_rows=0), "n_rows must be a positive integer"),
        (dict(slip=1.5), "slip must be a probability"),
        (dict(r_target=float("nan")), "r_target must be a finite"),
        (dict(start=(1, 1), block_forbidden=True), "start"),
        (dict(target="a"), r"\(row, col\) pair"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GridWorld(**kwargs)


def test_bad_action():
    env = GridWorld()
    env.reset()
    with pytest.raises(ValueError, match="0..4"):
        env.step(7)


@pytest.mark.parametrize("cell", [(1.7, 2.2), (True, 1), ("1", 2), (1,)])
def test_cells_must_be_integer_pairs(cell):
    with pytest.raises(ValueError, match="must be a \\(row, col\\) pair of integers"):
        GridWorld(target=cell)
