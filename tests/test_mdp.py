import gymnasium as gym
import numpy as np
import pytest
import scipy.sparse as sp

from bellman import TabularMDP


def two_state_mdp():
    # state 0: action 0 stays (r=0), action 1 moves to 1 (r=1); state 1 absorbing with r=2
    P = np.zeros((2, 2, 2))
    P[0, 0, 0] = P[0, 1, 1] = P[1, 0, 1] = P[1, 1, 1] = 1.0
    R = np.array([[0.0, 1.0], [2.0, 2.0]])
    return P, R


def test_dense_and_sparse_models_agree():
    P, R = two_state_mdp()
    dense = TabularMDP(P, R, 0.9)
    sparse = TabularMDP(sp.csr_matrix(P.reshape(4, 2)), R, 0.9)
    v = np.array([1.0, -3.0])
    pi = np.array([[0.25, 0.75], [1.0, 0.0]])
    assert np.allclose(dense.q_from_v(v), sparse.q_from_v(v))
    assert np.allclose(dense.P_pi(pi), sparse.P_pi(pi).toarray())
    assert np.allclose(dense.r_pi(pi), [0.75, 2.0])
    assert np.allclose(dense.q_from_v(v), R + 0.9 * np.array([[1.0, -3.0], [-3.0, -3.0]]))


def test_rows_must_sum_to_one_and_error_names_state_action():
    P, R = two_state_mdp()
    P[1, 0, 1] = 0.5
    with pytest.raises(ValueError, match=r"s=1, a=0"):
        TabularMDP(P, R, 0.9)


def test_probabilities_must_be_in_unit_interval():
    P, R = two_state_mdp()
    P[0, 0] = [1.5, -0.5]
    with pytest.raises(ValueError, match=r"s'=0\|s=0, a=0\) = 1.5"):
        TabularMDP(P, R, 0.9)


@pytest.mark.parametrize("gamma", [-0.1, 1.0, 1.5, float("nan")])
def test_gamma_out_of_range(gamma):
    P, R = two_state_mdp()
    with pytest.raises(ValueError, match="gamma must be in"):
        TabularMDP(P, R, gamma)


def test_gamma_one_needs_episodic_flag():
    P, R = two_state_mdp()
    assert TabularMDP(P, R, 1.0, episodic=True).gamma == 1.0


def test_nan_reward_rejected():
    P, R = two_state_mdp()
    R[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"R must be finite.*R\[1, 1\]"):
        TabularMDP(P, R, 0.9)


@pytest.mark.parametrize(
    "P_shape, R_shape", [((2, 2, 3), (2, 2)), ((2, 2, 2), (2, 3)), ((2, 2, 2), (2,))]
)
def test_shapes_must_agree(P_shape, R_shape):
    with pytest.raises(ValueError, match="shape"):
        TabularMDP(np.full(P_shape, 1.0 / P_shape[-1]), np.zeros(R_shape), 0.9)


def test_policy_validation():
    P, R = two_state_mdp()
    mdp = TabularMDP(P, R, 0.9)
    assert np.array_equal(mdp.check_policy(np.array([1, 0])), [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="state 0 sums to 0.9"):
        mdp.check_policy([[0.5, 0.4], [1, 0]])
    with pytest.raises(ValueError, match="not a probability"):
        mdp.check_policy([[1.5, -0.5], [1, 0]])
    with pytest.raises(ValueError, match="entries in 0..1"):
        mdp.check_policy(np.array([0, 2]))
    with pytest.raises(ValueError, match="shape"):
        mdp.check_policy(np.ones((3, 2)) / 2)


def test_from_arrays_toolbox_conventions():
    P, R = two_state_mdp()
    reference = TabularMDP(P, R, 0.9)
    v = np.array([0.3, 1.7])
    P_ass = P.transpose(1, 0, 2)
    # (A, S, S) dense, needs the layout when S == A
    with pytest.raises(ValueError, match="ambiguous"):
        TabularMDP.from_arrays(P_ass, R, 0.9)
    m1 = TabularMDP.from_arrays(P_ass, R, 0.9, layout="ASS")
    # a list of A sparse (S, S) matrices
    m2 = TabularMDP.from_arrays([sp.csr_matrix(P_ass[a]) for a in range(2)], R, 0.9)
    # R of shape (A, S, S): the expectation under P is taken
    R_ass = np.zeros((2, 2, 2))
    R_ass[0, 0, 0], R_ass[1, 0, 1], R_ass[:, 1, 1] = 0.0, 1.0, 2.0
    m3 = TabularMDP.from_arrays(P_ass, R_ass, 0.9, layout="ASS")
    for m in (m1, m2, m3):
        assert np.allclose(m.q_from_v(v), reference.q_from_v(v))
    # R of shape (S,): state reward for every action
    m4 = TabularMDP.from_arrays(P, np.array([5.0, 6.0]), 0.9, layout="SAS")
    assert np.array_equal(m4.R, [[5, 5], [6, 6]])
    # a non-square toolbox array (A=3, S=2)
    P3 = np.stack([np.eye(2)] * 3)
    m5 = TabularMDP.from_arrays(P3, np.zeros((2, 3)), 0.5)
    assert (m5.n_states, m5.n_actions) == (2, 3)


def test_from_gymnasium_frozenlake_adds_one_absorbing_terminal_state():
    env = gym.make("FrozenLake-v1", is_slippery=True)
    mdp = TabularMDP.from_gymnasium(env, gamma=0.99)
    assert (mdp.n_states, mdp.n_actions) == (17, 4)
    T = 16
    # from the state left of the goal (14), moving right reaches the goal with prob 1/3 and reward 1
    assert mdp.R[14, 2] == pytest.approx(1 / 3)
    assert mdp.dense_P()[14, 2, T] == pytest.approx(1 / 3 + 0)  # goal is terminal
    assert np.allclose(mdp.dense_P()[T, :, T], 1.0) and np.all(mdp.R[T] == 0)


def test_from_gymnasium_taxi_terminal_transitions():
    env = gym.make("Taxi-v4")
    mdp = TabularMDP.from_gymnasium(env, gamma=0.9)
    assert (mdp.n_states, mdp.n_actions) == (501, 6)
    table = env.unwrapped.P
    s, a = next((s, a) for s in range(500) for a in range(6) if table[s][a][0][3])
    assert mdp.dense_P()[s, a, 500] == 1.0 and mdp.R[s, a] == 20


def test_from_gymnasium_needs_a_model():
    with pytest.raises(ValueError, match="unwrapped.P"):
        TabularMDP.from_gymnasium(gym.make("CartPole-v1"), gamma=0.9)
