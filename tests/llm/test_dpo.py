"""DPO / IPO / hinge losses against their formulas, and preference pairs from sampled completions."""

import math

import pytest
import torch

from bellman.llm.dpo import build_preference_pairs, dpo_loss

# Hand-made sequence log-probs: policy and reference, chosen (w) and rejected (l).
LOGP_W = torch.tensor([-4.0, -10.0])
LOGP_L = torch.tensor([-6.0, -9.0])
REF_W = torch.tensor([-5.0, -9.5])
REF_L = torch.tensor([-5.5, -9.0])
# h = (logp_w - ref_w) - (logp_l - ref_l): pair 0: 1.0 - (-0.5) = 1.5; pair 1: -0.5 - 0.0 = -0.5


@pytest.mark.parametrize("loss_type, expected", [
    ("sigmoid", [-math.log(1 / (1 + math.exp(-0.5 * 1.5))), -math.log(1 / (1 + math.exp(-0.5 * -0.5)))]),
    ("ipo", [(1.5 - 1.0) ** 2, (-0.5 - 1.0) ** 2]),
    ("hinge", [max(0.0, 1 - 0.5 * 1.5), max(0.0, 1 - 0.5 * -0.5)]),
])
def test_losses_match_formulas(loss_type, expected):
    losses, chosen, rejected = dpo_loss(LOGP_W, LOGP_L, REF_W, REF_L, beta=0.5, loss_type=loss_type)
    torch.testing.assert_close(losses, torch.tensor(expected))
    torch.testing.assert_close(chosen, torch.tensor([0.5, -0.25]))      # beta (logp_w - ref_w)
    torch.testing.assert_close(rejected, torch.tensor([-0.25, 0.0]))    # beta (logp_l - ref_l)
    assert (chosen > rejected).tolist() == [True, False]                # preference accuracy 1/2


def test_hinge_is_zero_past_margin_and_sigmoid_gradient_sign():
    logp_w = torch.tensor([0.0], requires_grad=True)
    losses, _, _ = dpo_loss(logp_w, torch.tensor([-30.0]), torch.tensor([0.0]), torch.tensor([0.0]),
                            beta=0.1, loss_type="hinge")
    assert losses.item() == 0.0                                          # beta h = 3 > 1
    losses, _, _ = dpo_loss(logp_w, torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0]), beta=0.1)
    losses.sum().backward()
    assert logp_w.grad.item() == pytest.approx(-0.1 * 0.5)               # d/dx -log sig(beta x) at 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(LOGP_W, LOGP_L, REF_W, REF_L, loss_type="kto")
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(LOGP_W, LOGP_L, REF_W, REF_L, beta=0.0)
    with pytest.raises(ValueError, match="shape"):
        dpo_loss(LOGP_W, LOGP_L[:1], REF_W, REF_L)
    with pytest.raises(TypeError):
        dpo_loss([1.0], LOGP_L, REF_W, REF_L)


def test_preference_pairs_from_samples():
    prompts = ["a", "a", "a", "a", "b", "b", "c", "c"]
    completions = ["1", "2", "2", "3", "x", "y", "p", "q"]
    rewards = [1.0, 0.1, 0.1, 0.0, 0.5, 0.5, 0.0, 1.0]
    pairs = build_preference_pairs(prompts, completions, rewards)
    # "a": chosen "1" against the distinct lower ones, lowest reward first; "b" all equal: no pair.
    assert pairs == [{"prompt": "a", "chosen": "1", "rejected": "3"},
                     {"prompt": "a", "chosen": "1", "rejected": "2"},
                     {"prompt": "c", "chosen": "q", "rejected": "p"}]
    assert len(build_preference_pairs(prompts, completions, rewards, max_pairs_per_prompt=1)) == 2
    with pytest.raises(ValueError, match="one length"):
        build_preference_pairs(prompts, completions[:-1], rewards)
    with pytest.raises(ValueError, match="NaN"):
        build_preference_pairs(["a"], ["1"], [float("nan")])
