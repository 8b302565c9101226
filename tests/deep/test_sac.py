"""SAC: the temperature loss and the soft target against hand-computed numbers, the squashed Gaussian
log-probability against torch's Normal and TanhTransform, the learned temperature's direction, checkpoints and
resumption, errors, learning Pendulum."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal
from torch.distributions.transforms import TanhTransform

from bellman.deep import SAC, SACConfig, algorithm
from bellman.deep.sac import soft_q_target, squashed_gaussian_log_prob, temperature_loss

SMALL = dict(hidden=(32, 32), learning_starts=200, batch_size=32, buffer_size=5_000, train_freq=4, gradient_steps=2)


def test_temperature_loss_and_gradient_by_hand():
    log_alpha = torch.tensor([math.log(0.5)], requires_grad=True)
    log_prob = torch.tensor([-1.0, 0.5, 2.0], requires_grad=True)
    loss = temperature_loss(log_alpha, log_prob, target_entropy=-1.0)
    # ln pi + H_target = [-2, -0.5, 1], mean -0.5: J = -ln(0.5) * -0.5
    assert loss.item() == pytest.approx(0.5 * math.log(0.5))
    loss.backward()
    # dJ / d ln alpha = -mean(ln pi + H_target) = 0.5 > 0: the entropy -E[ln pi] = -0.5 is above H_target = -1,
    # so gradient descent lowers alpha; the log-probabilities get no gradient
    assert log_alpha.grad.item() == pytest.approx(0.5)
    assert log_prob.grad is None


def test_soft_q_target_by_hand():
    q_next = torch.tensor([[1.0, 3.0], [2.0, 1.0]])
    log_prob_next = torch.tensor([-0.5, 1.0])
    r, terminated = torch.tensor([0.5, 1.0]), torch.tensor([0.0, 1.0])
    # min q = [1, 1]; minus alpha ln pi with alpha 0.2: [1.1, 0.8]; y = [0.5 + 0.9 * 1.1, 1 + 0]
    y = soft_q_target(r, terminated, q_next, log_prob_next, 0.2, 0.9)
    torch.testing.assert_close(y, torch.tensor([0.5 + 0.9 * 1.1, 1.0]))


def test_squashed_gaussian_log_prob_matches_torch():
    g = torch.Generator().manual_seed(0)
    shape = (50, 3)
    mean = torch.randn(shape, generator=g, dtype=torch.float64)
    log_std = torch.randn(shape, generator=g, dtype=torch.float64) * 0.5
    u = mean + log_std.exp() * torch.randn(shape, generator=g, dtype=torch.float64)
    # change of variables a = tanh(u): ln N(u) - ln |da/du|, torch's Normal and TanhTransform
    jacobian = TanhTransform().log_abs_det_jacobian(u, torch.tanh(u))
    expected = (Normal(mean, log_std.exp()).log_prob(u) - jacobian).sum(-1)
    ours = squashed_gaussian_log_prob(u, mean, log_std)
    # the 1e-6 inside ln(1 - tanh(u)^2 + 1e-6) lowers the result by less than 1e-6 / (1 - tanh(u)^2) per dim
    slack = (1e-6 / (1 - torch.tanh(u).pow(2))).sum(-1)
    assert ((expected - ours >= 0) & (expected - ours <= slack)).all()


def test_temperature_settings_and_direction():
    agent = SAC("Pendulum-v1", SACConfig(**SMALL), seed=0)
    assert agent.target_entropy == -1.0 and agent.temperature.log_alpha.item() == 0.0  # -dim(A), ln 1
    assert SAC("Pendulum-v1", SACConfig(**SMALL, ent_coef="auto_0.1")).alpha.item() == pytest.approx(0.1)
    fixed = SAC("Pendulum-v1", SACConfig(**SMALL, ent_coef="0.05"))
    assert not hasattr(fixed, "temperature") and fixed.alpha.item() == pytest.approx(0.05)
    # an impossible entropy target (far above the entropy of any policy on [-1, 1]) pushes alpha up,
    # one that every policy meets pushes it down
    for target, direction in ((5.0, 1), (-50.0, -1)):
        agent = SAC("Pendulum-v1", SACConfig(**SMALL, target_entropy=target), seed=0).learn(400, progress=False)
        assert np.sign(agent.temperature.log_alpha.item()) == direction


def test_sac_checkpoint_round_trip_and_continued_training(tmp_path):
    config = SACConfig(**SMALL)
    straight = SAC("Pendulum-v1", config, seed=2).learn(500, progress=False)
    half = SAC("Pendulum-v1", config, seed=2).learn(300, progress=False)
    half.save(tmp_path / "sac.pt")
    resumed = algorithm("sac").load(tmp_path / "sac.pt")
    assert resumed.temperature.log_alpha.item() == half.temperature.log_alpha.item() != 0.0
    obs = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    np.testing.assert_array_equal(resumed.predict(obs), half.predict(obs))
    resumed.learn(500, progress=False)
    for net in ("pi", "q", "q_target", "temperature"):
        for p, q in zip(getattr(straight, net).parameters(), getattr(resumed, net).parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    actions = straight.predict(obs)
    assert actions.shape == (8, 1) and np.abs(actions).max() <= 2.0


def test_sac_config_errors():
    for bad in ("automatic", "auto_0", "auto_-1", "-0.1", "nan"):
        with pytest.raises(ValueError, match="SACConfig.ent_coef"):
            SACConfig(ent_coef=bad)
    with pytest.raises(ValueError, match="target_update_interval"):
        SACConfig(target_update_interval=0)
    with pytest.raises(TypeError, match="Box action space"):
        SAC("CartPole-v1")


def test_sac_learns_pendulum_quickly():
    config = SACConfig(hidden=(64, 64), learning_starts=1000, batch_size=128, gamma=0.98, learning_rate=1e-3)
    agent = SAC("Pendulum-v1", config, seed=0).learn(8_000, progress=False)  # seeds 1, 2: -193, -167
    mean, _ = agent.evaluate(episodes=10)
    assert mean > -400  # random torques score about -1200; swinging up and holding about -150
