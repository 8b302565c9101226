"""PPO: the clipped surrogate and value losses on hand-made numbers, KL early stop, learning on CartPole."""

import pytest
import torch

from bellman.core.losses import clipped_surrogate_loss, value_loss
from bellman.deep import PPO, PPOConfig


def test_clipped_surrogate_hand_computed():
    ratio = torch.tensor([0.5, 1.1, 1.5, 0.7, 1.3])
    advantage = torch.tensor([1.0, 2.0, 1.0, -1.0, -2.0])
    # min(r A, clip(r, 0.8, 1.2) A) per sample:
    #   0.5*1=0.5 vs 0.8*1=0.8 -> 0.5;  1.1*2=2.2 vs 2.2 -> 2.2;  1.5*1=1.5 vs 1.2 -> 1.2
    #   0.7*-1=-0.7 vs 0.8*-1=-0.8 -> -0.8;  1.3*-2=-2.6 vs 1.2*-2=-2.4 -> -2.6
    expected = -(0.5 + 2.2 + 1.2 - 0.8 - 2.6) / 5
    assert clipped_surrogate_loss(ratio, advantage, 0.2)[0].item() == pytest.approx(expected)


def test_clipped_surrogate_gradient_vanishes_outside_the_trust_region():
    ratio = torch.tensor([1.5, 0.5, 1.0], requires_grad=True)
    clipped_surrogate_loss(ratio, torch.tensor([1.0, -1.0, 1.0]), 0.2)[0].backward()
    assert ratio.grad.tolist() == pytest.approx([0.0, 0.0, -1.0 / 3])


def test_value_loss_hand_computed():
    v, v_old, g = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([3.0, 0.5])
    assert value_loss(v, v_old, g, None)[0].item() == pytest.approx((1.0 + 0.25) / 2)
    # clipped to within 0.5 of v_old: 1.5 and 0.5 -> squared errors 2.25 and 0; max with unclipped 1 and 0.25
    assert value_loss(v, v_old, g, 0.5)[0].item() == pytest.approx((2.25 + 0.25) / 2)


def test_kl_early_stop_cuts_epochs():
    tiny = dict(n_envs=2, n_steps=64, batch_size=32, n_epochs=50, hidden=(16,), learning_rate=1e-2)
    free = PPO("CartPole-v1", PPOConfig(**tiny), seed=0)
    stopped = PPO("CartPole-v1", PPOConfig(**tiny, target_kl=1e-4), seed=0)
    counts = []
    for agent in (free, stopped):
        n = 0
        original = agent.optimizer.step

        def counting_step(*args, original=original, **kwargs):
            nonlocal n
            n += 1
            return original(*args, **kwargs)
        agent.optimizer.step = counting_step
        metrics = agent.train_iteration()
        counts.append(n)
    assert counts[0] == 50 * 4 and 1 <= counts[1] < 20
    assert metrics["approx_kl"] < 1.5e-4 * 10


def test_ppo_learns_cartpole():
    agent = PPO("CartPole-v1", PPOConfig.for_env("CartPole-v1"), seed=0)
    agent.learn(30_000, progress=False)
    mean, _ = agent.evaluate(10)
    assert mean >= 200


def test_ppo_continuous_improves_on_pendulum():
    config = PPOConfig.for_env("Pendulum-v1", n_steps=256, n_epochs=5)
    agent = PPO("Pendulum-v1", config, seed=0)
    before, _ = agent.evaluate(5)
    agent.learn(20_000, progress=False)
    after, _ = agent.evaluate(5)
    assert after > before + 200


def test_learning_rate_anneals_linearly_to_zero():
    config = PPOConfig(n_envs=2, n_steps=16, batch_size=32, n_epochs=1, hidden=(8,), learning_rate=1e-3,
                       anneal_lr=True)
    agent = PPO("CartPole-v1", config, seed=0).learn(320, log_every=1, progress=False)
    for row in agent.logger_rows:  # one row per iteration; lr set from the step count after its rollout
        assert row["learning_rate"] == pytest.approx(1e-3 * max(0.0, 1 - row["step"] / 320))
    assert agent.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * max(0.0, 1 - agent.step / 320))


def test_fast_preset_is_the_zoo_setting_with_more_envs_and_fewer_epochs():
    zoo, fast = PPOConfig.for_env("CartPole-v1"), PPOConfig.for_env("CartPole-v1", fast=True)
    assert (fast.n_envs, fast.n_steps, fast.batch_size, fast.n_epochs, fast.learning_rate) == (16, 16, 128, 4, 3e-3)
    assert fast.n_envs * fast.n_steps == zoo.n_envs * zoo.n_steps == zoo.batch_size  # 256 samples an iteration
    assert fast.replace(n_envs=8, n_steps=32, batch_size=256, n_epochs=20, learning_rate=1e-3) == zoo
    assert PPOConfig.for_env("CartPole-v1", fast=True, n_epochs=6).n_epochs == 6  # explicit changes win
    with pytest.raises(ValueError, match="no fast preset for 'Pendulum-v1'"):
        PPOConfig.for_env("Pendulum-v1", fast=True)
    with pytest.raises(TypeError, match="fast must be a bool"):
        PPOConfig.for_env("CartPole-v1", fast="yes")


def test_fast_preset_learns_cartpole():
    agent = PPO("CartPole-v1", PPOConfig.for_env("CartPole-v1", fast=True), seed=0)
    agent.learn(50_000, progress=False)
    mean, _ = agent.evaluate(10)
    assert mean >= 475  # half the benchmark's budget; the untrained policy balances about 10 steps
