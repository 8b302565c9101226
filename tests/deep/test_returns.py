"""GAE, n-step and Monte Carlo returns against loops written straight from the definitions."""

import numpy as np
import pytest
import torch

from bellman.deep.returns import discounted_returns, gae, n_step_returns


def rollout(seed=0, t=12, n=3):
    g = np.random.default_rng(seed)
    rewards = torch.tensor(g.normal(size=(t, n)), dtype=torch.float32)
    values = torch.tensor(g.normal(size=(t + 1, n)), dtype=torch.float32)
    terminated = torch.tensor(g.random((t, n)) < 0.15)
    truncated = torch.tensor(g.random((t, n)) < 0.1) & ~terminated
    return rewards, values, terminated, terminated | truncated


def brute_gae(r, v, term, done, gamma, lam):
    t_len, n = r.shape
    out = np.zeros((t_len, n))
    for i in range(n):
        for t in range(t_len):
            total, weight = 0.0, 1.0
            for k in range(t, t_len):
                delta = r[k, i] + gamma * (0.0 if term[k, i] else v[k + 1, i]) - v[k, i]
                total += weight * delta
                if done[k, i]:
                    break
                weight *= gamma * lam
            out[t, i] = total
    return out


def brute_n_step(r, v, term, done, gamma, n_look):
    t_len, n = r.shape
    out = np.zeros((t_len, n))
    for i in range(n):
        for t in range(t_len):
            g, k = 0.0, t
            while True:
                g += gamma ** (k - t) * r[k, i]
                if done[k, i]:
                    if not term[k, i]:
                        g += gamma ** (k - t + 1) * v[k + 1, i]
                    break
                if k == min(t + n_look, t_len) - 1:
                    g += gamma ** (k - t + 1) * v[k + 1, i]
                    break
                k += 1
            out[t, i] = g
    return out


@pytest.mark.parametrize("lam", [0.0, 0.8, 1.0])
def test_gae_matches_brute_force(lam):
    r, v, term, done = rollout()
    expected = brute_gae(r.numpy(), v.numpy(), term.numpy(), done.numpy(), 0.9, lam)
    np.testing.assert_allclose(gae(r, v, term, done, 0.9, lam).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_gae_hand_computed():
    # one env, 2 steps, no episode end: delta0 = 1 + 0.5*2 - 1 = 1, delta1 = 0 + 0.5*4 - 2 = 0
    r = torch.tensor([[1.0], [0.0]])
    v = torch.tensor([[1.0], [2.0], [4.0]])
    no = torch.zeros(2, 1, dtype=torch.bool)
    a = gae(r, v, no, no, gamma=0.5, lam=0.5)
    assert a[:, 0].tolist() == [1.0, 0.0]
    # terminated at step 0: delta0 = 1 - 1 = 0 and nothing flows back from step 1
    a = gae(r, v, torch.tensor([[True], [False]]), torch.tensor([[True], [False]]), gamma=0.5, lam=0.5)
    assert a[:, 0].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("n_look", [1, 3, 100])
def test_n_step_returns_match_brute_force(n_look):
    r, v, term, done = rollout(1)
    expected = brute_n_step(r.numpy(), v.numpy(), term.numpy(), done.numpy(), 0.95, n_look)
    got = n_step_returns(r, v, term, done, 0.95, n_look)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_n_step_to_rollout_end_equals_gae_lambda_one():
    r, v, term, done = rollout(2)
    got = n_step_returns(r, v, term, done, 0.9, r.shape[0]) - v[:-1]
    np.testing.assert_allclose(got.numpy(), gae(r, v, term, done, 0.9, 1.0).numpy(), rtol=1e-5, atol=1e-5)


def test_one_step_return_hand_computed():
    r = torch.tensor([[1.0], [2.0]])
    v = torch.tensor([[0.0], [10.0], [20.0]])
    no = torch.zeros(2, 1, dtype=torch.bool)
    assert n_step_returns(r, v, no, no, 0.5, 1)[:, 0].tolist() == [1.0 + 0.5 * 10.0, 2.0 + 0.5 * 20.0]
    assert n_step_returns(r, v, no, no, 0.5, 2)[:, 0].tolist() == [1.0 + 0.5 * 2.0 + 0.25 * 20.0, 12.0]


def test_discounted_returns():
    r = torch.tensor([[1.0], [1.0], [1.0], [1.0]])
    done = torch.tensor([[False], [True], [False], [False]])
    assert discounted_returns(r, done, 0.5)[:, 0].tolist() == [1.5, 1.0, 1.5, 1.0]


def test_bad_shapes_and_gamma():
    r, v, term, done = rollout()
    with pytest.raises(ValueError, match="values must have shape"):
        gae(r, v[:-1], term, done, 0.9, 0.9)
    with pytest.raises(ValueError, match="gamma"):
        gae(r, v, term, done, 1.5, 0.9)
    with pytest.raises(ValueError, match="lam"):
        gae(r, v, term, done, 0.9, -0.1)
    with pytest.raises(ValueError, match="n must be"):
        n_step_returns(r, v, term, done, 0.9, 0)
