"""The PPO losses: hand-computed clip fractions, and the masked form equal to the plain mean over the mask."""

import pytest
import torch

from bellman.core.losses import clipped_surrogate_loss, value_loss


def test_clip_fractions_hand_computed():
    ratio = torch.tensor([0.5, 1.1, 1.5, 0.7, 1.3])
    advantage = torch.tensor([1.0, 2.0, 1.0, -1.0, -2.0])
    # the clipped term decides at r = 1.5 (A > 0) and r = 0.7 (A < 0); r = 1.1 is inside, 0.5 and 1.3 gain nothing
    assert clipped_surrogate_loss(ratio, advantage, 0.2)[1].item() == pytest.approx(2 / 5)
    v, v_old, g = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([3.0, 0.5])
    # clipped to within 0.5 of v_old: (1.5 - 3)^2 = 2.25 > 1 decides, 0 < 0.25 does not
    assert value_loss(v, v_old, g, 0.5)[1].item() == pytest.approx(1 / 2)
    assert value_loss(v, v_old, g, None)[1].item() == 0.0


def test_masked_losses_are_the_means_over_the_mask():
    g = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    ratio, adv, v, v_old, ret = (torch.rand(2, 3, generator=g) + 0.5 for _ in range(5))
    keep = mask.bool()
    pairs = ((clipped_surrogate_loss(ratio, adv, 0.2, mask), clipped_surrogate_loss(ratio[keep], adv[keep], 0.2)),
             (value_loss(v, v_old, ret, 0.1, mask), value_loss(v[keep], v_old[keep], ret[keep], 0.1)))
    for masked, plain in pairs:
        torch.testing.assert_close(masked[0], plain[0])
        torch.testing.assert_close(masked[1], plain[1])
    with pytest.raises(ValueError, match="shape of the mask"):
        value_loss(v[:, :2], v_old, ret, 0.1, mask)
