"""DDPG: Ornstein-Uhlenbeck noise statistics, the deterministic policy gradient step, checkpoints, errors, learning."""

import numpy as np
import pytest
import torch

from bellman.deep import DDPG, DDPGConfig, DQN
from bellman.deep.ddpg import OrnsteinUhlenbeckNoise

SMALL = dict(hidden=(32, 32), learning_starts=200, batch_size=32, buffer_size=5_000, train_freq=4, gradient_steps=2)


def test_ornstein_uhlenbeck_noise_statistics():
    theta, sigma, dt, n = 0.15, 0.2, 1e-2, 300
    noise = OrnsteinUhlenbeckNoise((40_000, 1), sigma, theta, dt)
    rng = np.random.default_rng(0)
    for _ in range(n - 1):
        noise(rng)
    x_prev = noise.x.copy()
    x = noise(rng)
    # x_n is an AR(1) process from 0: x_{t+1} = a x_t + sigma sqrt(dt) eps, a = 1 - theta dt
    a = 1 - theta * dt
    var_n = sigma**2 * dt * (1 - a ** (2 * n)) / (1 - a**2)
    assert abs(x.mean()) < 4 * np.sqrt(var_n / x.size)
    assert x.var() == pytest.approx(var_n, rel=0.03)
    # lag-one covariance E[x_n x_{n-1}] = a Var[x_{n-1}]
    var_prev = sigma**2 * dt * (1 - a ** (2 * (n - 1))) / (1 - a**2)
    assert np.mean(x * x_prev) == pytest.approx(a * var_prev, rel=0.03)
    noise.reset(np.arange(40_000) < 10)
    assert (noise.x[:10] == 0).all() and (noise.x[10:] != 0).all()
    state = noise.state_dict()
    other = OrnsteinUhlenbeckNoise((40_000, 1), sigma, theta, dt)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other(np.random.default_rng(1)), noise(np.random.default_rng(1)))


def test_actor_step_follows_the_critic_gradient():
    """With the critic frozen, one actor step moves mu(s) up grad_a q(s, a) (the DPG direction)."""
    agent = DDPG("Pendulum-v1", DDPGConfig(**SMALL), seed=0)
    obs = agent.encode(np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32))
    a = agent.mu(obs).detach().requires_grad_(True)
    grad_a = torch.autograd.grad(agent.q(obs, a).sum(), a)[0]
    loss = -agent.q(obs, agent.mu(obs)).mean()
    agent.mu_optimizer.zero_grad()
    loss.backward()
    agent.mu_optimizer.step()
    moved = agent.mu(obs).detach() - a.detach()
    assert (moved * grad_a).sum() > 0


def test_action_space_errors():
    with pytest.raises(TypeError, match="Box action space"):
        DDPG("CartPole-v1")
    with pytest.raises(TypeError, match="Discrete action space"):
        DQN("MountainCarContinuous-v0")
    with pytest.raises(ValueError, match="noise"):
        DDPGConfig(noise="pink")
    with pytest.raises(ValueError, match="unknown env id"):
        DDPG("Pendulum-v9")


@pytest.mark.parametrize("noise", ["normal", "ou"])
def test_ddpg_checkpoint_round_trip_and_continued_training(tmp_path, noise):
    config = DDPGConfig(**SMALL, noise=noise)
    straight = DDPG("Pendulum-v1", config, seed=2).learn(500, progress=False)
    half = DDPG("Pendulum-v1", config, seed=2).learn(300, progress=False)
    half.save(tmp_path / "ddpg.pt")
    resumed = DDPG.load(tmp_path / "ddpg.pt")
    obs = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    np.testing.assert_array_equal(resumed.predict(obs), half.predict(obs))
    resumed.learn(500, progress=False)
    for net in ("mu", "q", "mu_target", "q_target"):
        for p, q in zip(getattr(straight, net).parameters(), getattr(resumed, net).parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    actions = straight.predict(obs)
    assert actions.shape == (8, 1) and np.abs(actions).max() <= 2.0


def test_ddpg_learns_pendulum_quickly():
    config = DDPGConfig.for_env("Pendulum-v1", hidden=(64, 64), learning_starts=500, batch_size=64)
    agent = DDPG("Pendulum-v1", config, seed=0).learn(4_000, progress=False)
    mean, _ = agent.evaluate(episodes=10)
    assert mean > -600  # random torques score about -1200; the full 20k-step run reaches -200
