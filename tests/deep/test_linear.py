"""Linear value approximation: features, the TD fixed point, linear TD, linear Sarsa / Q-learning."""

import numpy as np
import pytest

from bellman.deep.linear import (
    Fourier,
    LinearQ,
    LinearQConfig,
    OneHot,
    Polynomial,
    TileCoding,
    feature_matrix,
    stationary_distribution,
    td_fixed_point,
    td_linear,
)
from bellman.envs import GridWorld
from bellman.planning import evaluate_policy, value_iteration

UNIFORM = np.full((25, 5), 0.2)


def grid_features(env, f):
    """phi of the (row, col) coordinates of a grid-world state."""
    return lambda s: f(np.array(env.cell_of(s), dtype=float))


# ------------------------------------------------------------------------------------ features
def test_one_hot_polynomial_fourier_values():
    np.testing.assert_array_equal(OneHot(4)(2), [0, 0, 1, 0])
    # x, y scaled to [0, 1]: (2, 1) in [0, 4]^2 -> (0.5, 0.25); [1, x, y, x^2, xy, y^2]
    np.testing.assert_allclose(Polynomial([0, 0], [4, 4], 2)([2, 1]), [1, 0.5, 0.25, 0.25, 0.125, 0.0625])
    f = Fourier([0, 0], [4, 4], 1)  # c in {0,1}^2: (0,0), (0,1), (1,0), (1,1)
    np.testing.assert_allclose(f([2, 1]), np.cos(np.pi * np.array([0, 0.25, 0.5, 0.75])))
    with pytest.raises(ValueError, match="allowed 0..3"):
        OneHot(4)(4)
    with pytest.raises(ValueError, match="high must exceed"):
        Polynomial([0, 1], [1, 1])
    with pytest.raises(ValueError, match="finite"):
        Fourier([0], [np.inf])
    with pytest.raises(ValueError, match="observation of 2 numbers"):
        Fourier([0, 0], [1, 1])([0.5])


def test_tile_coding_one_tile_per_tiling_and_generalisation():
    tc = TileCoding([-1.2, -0.07], [0.6, 0.07], n_tilings=8, tiles=8)
    assert tc.n_features == 8 * 9 * 9
    rng = np.random.default_rng(0)
    for x in rng.uniform([-1.2, -0.07], [0.6, 0.07], size=(50, 2)):
        idx = tc.indices(x)
        assert len(set(idx)) == 8 and all(t * 81 <= i < (t + 1) * 81 for t, i in enumerate(idx))
        assert tc(x).sum() == 8
    # close points share most tiles, far points none; the bounds are included
    a, b, c = tc.indices([0.0, 0.0]), tc.indices([0.01, 0.0]), tc.indices([0.5, 0.06])
    assert len(set(a) & set(b)) >= 6 and not set(a) & set(c)
    assert tc(np.array([0.6, 0.07])).sum() == 8 and tc(np.array([-1.2, -0.07])).sum() == 8
    hashed = TileCoding([-1.2, -0.07], [0.6, 0.07], 8, 8, hash_size=64)
    assert hashed.n_features == 64 and all(0 <= i < 64 for i in hashed.indices([0.1, 0.01]))


# ------------------------------------------------------------------------- the TD fixed point
def test_td_fixed_point_one_hot_is_v_pi_and_solves_projected_bellman():
    env = GridWorld()
    mdp = env.mdp
    v_pi = evaluate_policy(mdp, UNIFORM)
    np.testing.assert_allclose(td_fixed_point(mdp, UNIFORM, np.eye(25)), v_pi, atol=1e-10)

    # for polynomial features w_TD is the fixed point of the projected Bellman operator Pi_D T_pi,
    # reached here by iterating it (a contraction in the D-norm): Phi w = Pi_D (r_pi + gamma P_pi Phi w)
    Phi = feature_matrix(grid_features(env, Polynomial([0, 0], [4, 4], 2)), range(25))
    d = stationary_distribution(mdp.P_pi(UNIFORM))
    np.testing.assert_allclose(d @ mdp.P_pi(UNIFORM).toarray(), d, atol=1e-12)
    w = np.zeros(Phi.shape[1])
    sqrt_d = np.sqrt(d)[:, None]
    for _ in range(500):
        target = mdp.r_pi(UNIFORM) + mdp.gamma * mdp.P_pi(UNIFORM) @ (Phi @ w)
        w = np.linalg.lstsq(sqrt_d * Phi, sqrt_d[:, 0] * target, rcond=None)[0]
    np.testing.assert_allclose(td_fixed_point(mdp, UNIFORM, Phi), w, atol=1e-8)
    assert np.abs(Phi @ w - v_pi).max() > 0.3  # six features cannot represent v_pi exactly


def test_td_fixed_point_rejects_bad_inputs():
    mdp = GridWorld().mdp
    with pytest.raises(ValueError, match="Phi must have shape"):
        td_fixed_point(mdp, UNIFORM, np.eye(24))
    with pytest.raises(ValueError, match="not irreducible"):  # the greedy "stay" policy never moves
        td_fixed_point(mdp, np.full(25, 4), np.eye(25))


# ---------------------------------------------------------------------------------- linear TD
def test_td_linear_one_hot_converges_to_tabular_v_pi():
    env = GridWorld()
    v_pi = evaluate_policy(env.mdp, UNIFORM)
    w = td_linear(env, UNIFORM, OneHot(25), gamma=0.9, alpha=lambda t: 0.2 / (1 + t / 2_000),
                  steps=100_000, seed=0)
    assert np.abs(w - v_pi).max() < 0.15  # |v_pi| is about 3.5 everywhere


def test_td_linear_polynomial_converges_to_td_fixed_point():
    env = GridWorld()
    phi = grid_features(env, Polynomial([0, 0], [4, 4], 2))
    Phi = feature_matrix(phi, range(25))
    v_td = Phi @ td_fixed_point(env.mdp, UNIFORM, Phi)
    v_pi = evaluate_policy(env.mdp, UNIFORM)
    w = td_linear(env, UNIFORM, phi, gamma=0.9, alpha=lambda t: 0.05 / (1 + t / 10_000), steps=200_000, seed=0)
    assert np.abs(Phi @ w - v_td).max() < 0.15 < np.abs(Phi @ w - v_pi).max()
    # same seed, same numbers
    again = td_linear(env, UNIFORM, phi, gamma=0.9, alpha=lambda t: 0.05 / (1 + t / 10_000), steps=1000, seed=3)
    np.testing.assert_array_equal(again, td_linear(env, UNIFORM, phi, gamma=0.9,
                                                   alpha=lambda t: 0.05 / (1 + t / 10_000), steps=1000, seed=3))


def test_td_linear_rejects_bad_inputs():
    env = GridWorld()
    with pytest.raises(ValueError, match="gamma"):
        td_linear(env, UNIFORM, OneHot(25), gamma=1.5, alpha=0.1, steps=10)
    with pytest.raises(ValueError, match="alpha"):
        td_linear(env, UNIFORM, OneHot(25), gamma=0.9, alpha=0.0, steps=10)
    with pytest.raises(ValueError, match="policy table"):
        td_linear(env, np.full((25, 4), 0.25), OneHot(25), gamma=0.9, alpha=0.1, steps=10)
    with pytest.raises(ValueError, match="w0 must have shape"):
        td_linear(env, UNIFORM, OneHot(25), gamma=0.9, alpha=0.1, steps=10, w0=np.zeros(3))


# ----------------------------------------------------------------------- linear Sarsa / Q-learning
@pytest.mark.parametrize("method", ["q_learning", "sarsa"])
def test_linear_tile_coding_reaches_the_mountain_car_goal(method):
    agent = LinearQ("MountainCar-v0", LinearQConfig(method=method), seed=0).learn(20_000)
    mean, _ = agent.evaluate(episodes=5)
    assert mean > -200  # every evaluation episode reached the goal before the 200-step limit


def test_linear_q_learning_one_hot_is_tabular_and_finds_the_optimal_policy():
    env = GridWorld(terminal_target=True, max_steps=100)
    agent = LinearQ(env, LinearQConfig(alpha=0.1, gamma=0.9, epsilon=0.1), seed=0).learn(15_000)
    greedy = np.array([agent.predict(s) for s in range(25)])
    v_star = value_iteration(env.mdp).v
    # from the start (0, 0) the shortest safe path takes 10 steps: v*(start) = 0.9^10
    assert evaluate_policy(env.mdp, greedy)[0] == pytest.approx(v_star[0]) == pytest.approx(0.9**10)


def test_linear_q_save_load_round_trip(tmp_path):
    agent = LinearQ("MountainCar-v0", seed=1).learn(2_000)
    agent.save(tmp_path / "q.pt")
    loaded = LinearQ.load(tmp_path / "q.pt")
    np.testing.assert_array_equal(loaded.W, agent.W)
    obs = np.array([-0.5, 0.01])
    assert loaded.predict(obs) == agent.predict(obs) and loaded.step == 2_000


def test_linear_q_rejects_bad_inputs():
    with pytest.raises(ValueError, match="method"):
        LinearQConfig(method="expected")
    with pytest.raises(ValueError, match="epsilon"):
        LinearQConfig(epsilon=2.0)
    with pytest.raises(TypeError, match="Discrete action space"):
        LinearQ("Pendulum-v1")
    with pytest.raises(ValueError, match="unknown environment id"):
        LinearQ("NoSuchEnv-v9")
