import math

import gymnasium as gym
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from bellman import TabularMDP
from bellman.envs import GridWorld
from bellman.planning import (
    action_values,
    evaluate_policy,
    greedy_policy,
    policy_iteration,
    truncated_policy_iteration,
    value_iteration,
)

# v* of the course grid world (Zhao, chapter 4), rounded to one decimal
COURSE_V_STAR = np.array(
    [
        [5.8, 5.6, 6.2, 6.5, 5.8],
        [6.5, 7.2, 8.0, 7.2, 6.5],
        [7.2, 8.0, 10.0, 8.0, 7.2],
        [8.0, 10.0, 10.0, 10.0, 8.0],
        [7.2, 9.0, 10.0, 9.0, 8.1],
    ]
)


def bellman_optimality_residual(mdp, v):
    return np.max(np.abs(mdp.q_from_v(v).max(axis=1) - v))


def test_closed_form_and_iterative_evaluation_agree():
    mdp = GridWorld(slip=0.1).mdp
    pi = np.random.default_rng(0).dirichlet(np.ones(5), size=25)
    v_closed = evaluate_policy(mdp, pi, method="closed_form")
    v_iter = evaluate_policy(mdp, pi, method="iterative", tol=1e-12)
    assert np.max(np.abs(v_closed - v_iter)) < 1e-8
    # v_pi solves the Bellman equation v = r_pi + gamma P_pi v
    assert np.allclose(v_closed, mdp.r_pi(pi) + mdp.gamma * (mdp.P_pi(pi) @ v_closed), atol=1e-10)


def test_hand_checked_2x2():
    # target (1,1): from the neighbours one step down/right gives 1 + 0.9 * 10 = 10; (0,0) gets 0.9 * 10
    env = GridWorld(2, 2, target=(1, 1))
    result = value_iteration(env.mdp, tol=1e-12)
    assert np.allclose(result.v, [9.0, 10.0, 10.0, 10.0], atol=1e-9)
    # the greedy action at (0,0) ties between right and down: the lowest index (right) wins
    assert list(result.actions) == [1, 2, 1, 4]
    # the policy "always stay" is worth 10 on the target and 0 elsewhere
    v_stay = evaluate_policy(env.mdp, np.full(4, 4))
    assert np.allclose(v_stay, [0, 0, 0, 10])
    # q of "always stay": stepping from (0,1) down onto the target is worth 1 + 0.9 * 10
    assert action_values(env.mdp, v_stay)[1, 2] == pytest.approx(10.0)


def test_planning_methods_reach_the_same_optimum_on_the_course_grid():
    mdp = GridWorld().mdp
    vi = value_iteration(mdp, tol=1e-12)
    pi = policy_iteration(mdp)
    results = [vi, pi] + [truncated_policy_iteration(mdp, sweeps=j, tol=1e-12) for j in (1, 5, 50)]
    for r in results:
        assert np.max(np.abs(r.v - pi.v)) < 1e-8
        assert bellman_optimality_residual(mdp, r.v) < 1e-8
        # the returned policy is optimal: its exact value is v*
        assert np.max(np.abs(evaluate_policy(mdp, r.policy) - pi.v)) < 1e-8
    assert np.allclose(np.round(vi.v.reshape(5, 5), 1), COURSE_V_STAR)
    assert vi.v[GridWorld().target_state] == pytest.approx(1 / (1 - 0.9))
    # policy iteration converges in far fewer iterations than value iteration
    assert pi.iterations < 10 < vi.iterations
    assert len(vi.history) == vi.iterations + 1 and len(vi.residuals) == vi.iterations


def test_truncated_pi_with_one_sweep_is_value_iteration():
    mdp = GridWorld(slip=0.2).mdp
    vi = value_iteration(mdp, tol=1e-9)
    t1 = truncated_policy_iteration(mdp, sweeps=1, tol=1e-9)
    assert vi.iterations == t1.iterations
    for a, b in zip(vi.history, t1.history):
        assert np.allclose(a, b, atol=1e-12)


def test_policy_iteration_with_infinite_sweeps_equals_policy_iteration():
    mdp = GridWorld().mdp
    a, b = policy_iteration(mdp), truncated_policy_iteration(mdp, sweeps=math.inf)
    assert a.iterations == b.iterations and np.array_equal(a.policy, b.policy)


def test_target_value_for_other_rewards_and_discounts():
    env = GridWorld(r_target=2.0, gamma=0.5)
    assert value_iteration(env.mdp).v[env.target_state] == pytest.approx(2.0 / (1 - 0.5))


def test_frozenlake_model_value_matches_simulated_success_rate():
    env = gym.make("FrozenLake-v1", is_slippery=True)
    mdp = TabularMDP.from_gymnasium(env, gamma=1.0)
    result = value_iteration(mdp, tol=1e-10)
    assert bellman_optimality_residual(mdp, result.v) < 1e-8
    v_start = result.v[0]
    assert v_start == pytest.approx(0.8235, abs=1e-3)  # the known optimum of 4x4 slippery FrozenLake
    policy = result.actions
    lake = env.unwrapped
    rng_seed, episodes, successes = 0, 4000, 0
    for i in range(episodes):
        s, _ = lake.reset(seed=rng_seed + i)
        for _ in range(10_000):
            s, r, terminated, _, _ = lake.step(int(policy[s]))
            if terminated:
                successes += r
                break
    stderr = math.sqrt(v_start * (1 - v_start) / episodes)
    assert abs(successes / episodes - v_start) < 4 * stderr


def test_sparse_and_dense_planning_agree():
    mdp = GridWorld(slip=0.3).mdp
    dense = TabularMDP(mdp.dense_P(), mdp.R, mdp.gamma)
    assert np.allclose(policy_iteration(mdp).v, policy_iteration(dense).v, atol=1e-10)


def test_greedy_policy_breaks_near_ties_by_lowest_index():
    q = np.array([[1.0, 1.0 + 1e-13, 0.0], [0.0, 2.0, 3.0]])
    assert np.array_equal(greedy_policy(q), [[1, 0, 0], [0, 0, 1]])


def test_bad_planning_arguments():
    mdp = GridWorld().mdp
    with pytest.raises(ValueError, match="method must be"):
        evaluate_policy(mdp, np.zeros(25, dtype=int), method="magic")
    with pytest.raises(ValueError, match="tol must be a positive"):
        value_iteration(mdp, tol=0)
    with pytest.raises(ValueError, match="sweeps must be"):
        truncated_policy_iteration(mdp, sweeps=0)
    with pytest.raises(ValueError, match="sums to"):
        evaluate_policy(mdp, np.full((25, 5), 0.3))
    with pytest.raises(ValueError, match="shape"):
        action_values(mdp, np.zeros(3))
    with pytest.raises(RuntimeError, match="did not reach"):
        value_iteration(mdp, max_iterations=3)


def test_closed_form_with_gamma_one_and_a_non_terminating_policy_is_a_clear_error():
    P = np.zeros((2, 1, 2))
    P[0, 0, 1] = P[1, 0, 0] = 1.0
    mdp = TabularMDP(P, np.zeros((2, 1)), 1.0, episodic=True)
    with pytest.raises(ValueError, match="singular.*iterative"):
        evaluate_policy(mdp, np.zeros(2, dtype=int))


# --------------------------------------------------------------------------- property-based


@st.composite
def random_mdps(draw):
    S = draw(st.integers(1, 6))
    A = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    gamma = draw(st.floats(0.0, 0.95))
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(S) * 0.5, size=(S, A))
    P = P / P.sum(axis=2, keepdims=True)
    R = rng.normal(size=(S, A))
    sparse = draw(st.booleans())
    return TabularMDP(sp.csr_matrix(P.reshape(S * A, S)) if sparse else P, R, gamma), rng


@settings(max_examples=60, deadline=None)
@given(random_mdps())
def test_planning_identities_on_random_mdps(case):
    mdp, rng = case
    vi = value_iteration(mdp, tol=1e-12)
    pi = policy_iteration(mdp)
    # both satisfy the Bellman optimality equation and agree
    assert bellman_optimality_residual(mdp, pi.v) < 1e-8
    assert np.max(np.abs(vi.v - pi.v)) < 1e-8
    # v* dominates the value of any policy, and the greedy policy of v* attains it
    random_pi = rng.dirichlet(np.ones(mdp.n_actions), size=mdp.n_states)
    assert np.all(evaluate_policy(mdp, random_pi) <= pi.v + 1e-8)
    assert np.allclose(evaluate_policy(mdp, vi.policy), pi.v, atol=1e-8)
    # closed form and iteration agree; q is consistent with v: v_pi = sum_a pi q_pi
    v_pi = evaluate_policy(mdp, random_pi)
    assert np.allclose(v_pi, evaluate_policy(mdp, random_pi, method="iterative", tol=1e-13), atol=1e-8)
    assert np.allclose((random_pi * action_values(mdp, v_pi)).sum(axis=1), v_pi, atol=1e-10)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_initial_values_are_refused_at_once(bad):
    env = GridWorld()
    v0 = np.zeros(env.mdp.n_states)
    v0[3] = bad
    with pytest.raises(ValueError, match=r"v0 must be finite; it has NaN or inf at states \[3\]"):
        value_iteration(env.mdp, v0=v0)
