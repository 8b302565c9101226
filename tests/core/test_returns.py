"""GAE, n-step and Monte Carlo returns against loops written straight from the definitions."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from bellman.core.returns import discounted_returns, gae, n_step_returns, standardize, token_gae


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
    assert discounted_returns(r, 0.5, done)[:, 0].tolist() == [1.5, 1.0, 1.5, 1.0]


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


# ---- token sequences (B, T) right-padded by a mask: the LLM layout -------------------------------------

def reference_token_gae(rewards, values, mask, gamma, lam):
    """Per-token GAE written along the sequence, V and A past the last token 0 (PPO-RLHF's own loop)."""
    advantages = torch.zeros_like(values)
    a_next = v_next = m_next = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * v_next * m_next - values[:, t]
        a_next = (delta + gamma * lam * a_next * m_next) * mask[:, t]
        advantages[:, t] = a_next
        v_next, m_next = values[:, t], mask[:, t]
    return advantages, (advantages + values) * mask


def sequences(seed=0, b=6, t=9):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, t + 1, (b, 1), generator=g)
    mask = (torch.arange(t) < lengths).float()
    return torch.randn(b, t, generator=g) * mask, torch.randn(b, t, generator=g) * mask, mask


@pytest.mark.parametrize("gamma, lam", [(1.0, 0.95), (0.9, 0.5), (0.99, 1.0), (0.8, 0.0)])
def test_token_gae_is_gae_with_dones_at_the_last_token(gamma, lam):
    rewards, values, mask = sequences()
    adv, ret = token_gae(rewards, values, mask, gamma, lam)
    # the same data time-major: each sequence terminates after its last token, V(T) = 0
    last = mask.sum(1).long() - 1
    ended = torch.arange(mask.shape[1])[:, None] >= last[None, :]
    deep = gae(rewards.T, torch.cat([values.T, torch.zeros(1, len(mask))]), ended, ended, gamma, lam)
    assert torch.equal(adv, deep.T * mask)
    assert torch.equal(ret, (deep.T + values) * mask)
    # bit for bit the sequence-wise loop, also after a reduction (the layout is row-major like the inputs)
    ref_adv, ref_ret = reference_token_gae(rewards, values, mask, gamma, lam)
    assert torch.equal(adv, ref_adv) and torch.equal(ret, ref_ret)
    assert torch.equal(standardize(adv, mask), standardize(ref_adv, mask))


def test_token_gae_hand_computed():
    # one sequence of 2 tokens then padding: d1 = 2 - 3 = -1 (V past the end is 0), d0 = 1 + 0.5*3 - 1 = 1.5,
    # A0 = 1.5 + 0.5*0.5*(-1) = 1.25; R = A + V
    rewards, values = torch.tensor([[1.0, 2.0, 9.0]]), torch.tensor([[1.0, 3.0, 9.0]])
    adv, ret = token_gae(rewards, values, torch.tensor([[1.0, 1.0, 0.0]]), gamma=0.5, lam=0.5)
    assert adv.tolist() == [[1.25, -1.0, 0.0]] and ret.tolist() == [[2.25, 2.0, 0.0]]
    with pytest.raises(TypeError, match="torch.Tensor"):
        token_gae(rewards.numpy(), values, torch.ones(1, 3))


# ---- Monte Carlo returns (numpy: the tabular methods need no torch) -------------------------------------

def test_discounted_returns_one_episode_and_float32_kept():
    # g3 = 3, g2 = 2 + 0.5*3 = 3.5, g1 = 0 + 0.5*3.5 = 1.75, g0 = 1 + 0.5*1.75 = 1.875
    assert discounted_returns([1.0, 0.0, 2.0, 3.0], 0.5).tolist() == [1.875, 1.75, 3.5, 3.0]
    r = np.ones((3, 2), dtype=np.float32)
    g = discounted_returns(r, 0.5, np.array([[False, True], [False, False], [False, False]]))
    assert g.dtype == np.float32 and g.tolist() == [[1.75, 1.0], [1.5, 1.5], [1.0, 1.0]]
    # bit for bit scipy's linear filter y_t = x_t + gamma y_{t-1} over the reversed rewards
    x = np.random.default_rng(0).normal(size=(50, 3))
    assert np.array_equal(discounted_returns(x, 0.97), lfilter([1.0], [1.0, -0.97], x[::-1], axis=0)[::-1])
    with pytest.raises(ValueError, match="dones must have the shape"):
        discounted_returns(r, 0.5, np.zeros(3, dtype=bool))
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns(r, 1.5)
    with pytest.raises(ValueError, match="T >= 1"):
        discounted_returns([], 0.5)


# ---- advantage standardisation ----------------------------------------------------------------------------

def test_standardize_hand_computed():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    # sample std: sqrt(((1.5^2 + 0.5^2) * 2) / 3) = sqrt(5 / 3)
    torch.testing.assert_close(standardize(x), (x - 2.5) / (5 / 3) ** 0.5)
    torch.testing.assert_close(standardize(x, eps=1.0), (x - 2.5) / ((5 / 3) ** 0.5 + 1.0))
    one = torch.tensor([3.0])
    assert standardize(one) is one                      # no sample std of one value
    # with a mask: population variance 1.25 of the masked values, zero off the mask
    z = standardize(torch.tensor([[1.0, 2.0, 3.0], [4.0, 7.0, 7.0]]), torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]))
    torch.testing.assert_close(z, torch.tensor([[-1.5, -0.5, 0.5], [1.5, 0.0, 0.0]]) / 1.25 ** 0.5)


def test_the_shared_maths_loads_without_torch():
    code = ("import sys; import bellman.core.returns, bellman.core.losses, bellman.tabular; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
