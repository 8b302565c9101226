"""PPO for RLHF: KL-penalised rewards, GAE, clipped losses and reward normalisation on hand-made numbers."""

import pytest
import torch

from bellman.llm.ppo import (RunningMoments, gae, kl_penalised_rewards, masked_whiten, policy_loss,
                             value_loss)

# Two completions over 3 positions; the second is one token shorter (right padding).
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def test_kl_penalised_rewards_score_at_last_token():
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, -9.0]])
    ref = torch.tensor([[-1.5, -2.0, -1.0], [-0.5, -1.0, -1.0]])
    rewards = kl_penalised_rewards(torch.tensor([2.0, -1.0]), logp, ref, MASK, kl_coef=0.1)
    expected = torch.tensor([[-0.1 * 0.5, 0.0, -0.1 * 0.5 + 2.0],
                             [-0.1 * -0.5, 0.0 - 1.0, 0.0]])
    torch.testing.assert_close(rewards, expected)
    with pytest.raises(ValueError, match="at least one completion token"):
        kl_penalised_rewards(torch.zeros(2), logp, ref, torch.tensor([[1.0, 0, 0], [0, 0, 0]]), 0.1)
    with pytest.raises(ValueError, match="kl_coef"):
        kl_penalised_rewards(torch.zeros(2), logp, ref, MASK, -1.0)
    with pytest.raises(ValueError, match="scores"):
        kl_penalised_rewards(torch.zeros(3), logp, ref, MASK, 0.1)


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.5, -1.0, 7.0]])
    values = torch.tensor([[0.5, 0.2, 0.4], [0.1, 0.3, 5.0]])
    gamma, lam = 0.9, 0.5
    adv, ret = gae(rewards, values, MASK, gamma, lam)
    # row 0: d2 = 1 - 0.4 = 0.6; d1 = 0 + 0.9*0.4 - 0.2 = 0.16; d0 = 0 + 0.9*0.2 - 0.5 = -0.32
    a2 = 0.6
    a1 = 0.16 + 0.45 * a2
    a0 = -0.32 + 0.45 * a1
    # row 1 ends at t=1 (the padded value 5.0 and reward 7.0 are ignored): d1 = -1 - 0.3; d0 = 0.5 + 0.9*0.3 - 0.1
    b1 = -1.3
    b0 = 0.67 + 0.45 * b1
    torch.testing.assert_close(adv, torch.tensor([[a0, a1, a2], [b0, b1, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[a0 + 0.5, a1 + 0.2, a2 + 0.4], [b0 + 0.1, b1 + 0.3, 0.0]]))
    # gamma = lam = 1: the return is the sum of the future rewards.
    _, ret = gae(rewards, values, MASK, 1.0, 1.0)
    torch.testing.assert_close(ret, torch.tensor([[1.0, 1.0, 1.0], [-0.5, -1.0, 0.0]]))
    with pytest.raises(ValueError, match="gamma"):
        gae(rewards, values, MASK, 1.5, 0.5)
    with pytest.raises(ValueError, match="shape"):
        gae(rewards[:, :2], values, MASK)


def test_value_clipping():
    old = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    v = torch.tensor([[0.5, -0.1, 0.3], [1.0, 0.0, 99.0]])
    ret = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    loss, frac = value_loss(v, old, ret, MASK, clip_range=0.2)
    # per token max((v-R)^2, (clip(v, -0.2, 0.2) - R)^2): 0.64 (clipped), 0.01, 0.09, 1.0, 0.0; mean of 5
    assert loss.item() == pytest.approx(0.5 * (0.64 + 0.01 + 0.09 + 1.0 + 0.0) / 5)
    assert frac.item() == pytest.approx(1 / 5)
    loss, _ = value_loss(v, old, ret, MASK, clip_range=None)
    assert loss.item() == pytest.approx(0.5 * (0.25 + 0.01 + 0.09 + 1.0 + 0.0) / 5)


def test_policy_loss_clips_the_ratio():
    old = torch.zeros(2, 3)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.0], [1.1, 1.0, 50.0]]))
    adv = torch.tensor([[1.0, -1.0, 2.0], [-1.0, 3.0, 9.0]])
    loss, frac = policy_loss(logp, old, adv, MASK, clip_range=0.2)
    # tokens: A=1 r=1.5 -> -1.2 (clipped); A=-1 r=0.5 -> 0.8 (clipped); A=2 r=1 -> -2; A=-1 r=1.1 -> 1.1; A=3 r=1 -> -3
    assert loss.item() == pytest.approx((-1.2 + 0.8 - 2.0 + 1.1 - 3.0) / 5)
    assert frac.item() == pytest.approx(2 / 5)


def test_masked_whiten_ignores_padding():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 1000.0]])
    z = masked_whiten(x, MASK)
    vals = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    expected = (vals - 3.0) / vals.var(unbiased=False).sqrt()
    torch.testing.assert_close(z[MASK.bool()], expected, atol=1e-5, rtol=1e-5)
    assert z[1, 2].item() == 0.0


def test_running_moments_reward_normalisation():
    rm = RunningMoments()
    a, b = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, -4.0])
    rm.update(a)
    rm.update(b)
    allx = torch.cat([a, b]).double()
    assert rm.mean == pytest.approx(allx.mean().item())
    assert rm.std == pytest.approx(allx.std(unbiased=False).item())
    z = rm.normalise(torch.tensor([100.0, 2.4]), clip=3.0)
    assert z[0].item() == 3.0                                           # clipped
    assert z[1].item() == pytest.approx((2.4 - rm.mean) / rm.std, rel=1e-5)
    restored = RunningMoments()
    restored.load_state_dict(rm.state_dict())
    assert restored.state_dict() == rm.state_dict()
    with pytest.raises(ValueError, match="non-empty"):
        rm.update(torch.tensor([]))
