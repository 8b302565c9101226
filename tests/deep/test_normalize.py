"""Observation and reward normalisation: the statistics are those of the observations seen, episode returns stay
in the env's reward, the statistics survive save / load exactly, resumption is exact, evaluate and predict
leave them frozen."""

import numpy as np
import pytest
import torch

from bellman.deep import PPO, SAC, TD3, Agent, PPOConfig, SACConfig, TD3Config

RANDOM = dict(hidden=(16,), learning_starts=10_000, buffer_size=1_000)  # uniform random actions only
SMALL = dict(hidden=(32, 32), learning_starts=200, batch_size=32, buffer_size=5_000, train_freq=4, gradient_steps=2)
BOTH = dict(normalize_obs=True, normalize_reward=True)


def test_statistics_are_those_of_the_observations_and_returns_stay_raw():
    raw = TD3("Pendulum-v1", TD3Config(**RANDOM), seed=0).learn(400, progress=False)
    normed = TD3("Pendulum-v1", TD3Config(**RANDOM, **BOTH), seed=0).learn(400, progress=False)
    # the same random actions: the same episodes, whose returns are logged in the env's own reward
    assert list(normed.recent_returns) == list(raw.recent_returns) and len(raw.recent_returns) == 2
    b = raw.buffer
    # every observation the env gave: the first reset, each step's next observation, the autoreset's one
    seen = np.concatenate([b.obs[:1], b.next_obs[:200], b.obs[200:201], b.next_obs[200:400]]).astype(np.float64)
    stats = normed.obs_rms.state_dict()
    assert stats["count"] == pytest.approx(len(seen) + 1e-4)
    np.testing.assert_allclose(stats["mean"], seen.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["var"], seen.var(0), rtol=1e-4)
    # the buffer holds normalised observations and rewards; the return statistics use gamma
    assert np.abs(normed.buffer.obs[:400]).max() <= 10 and normed.return_rms.wrapper.gamma == normed.config.gamma
    scale = raw.buffer.rewards[:400] / normed.buffer.rewards[:400]
    assert (scale > 0).all() and scale[-1] == pytest.approx(np.sqrt(normed.return_rms.rms.var + 1e-8), rel=1e-5)


def test_normalised_observations_and_rewards_are_clipped_as_vecnormalize_clips_them():
    """VecNormalize's clip_obs / clip_reward (10 by default): the same random actions, with clipping and
    without, give the same statistics and the clipped values of the same normalised data; frozen
    normalisation (evaluate / predict) clips as training does."""
    free = TD3("Pendulum-v1", TD3Config(**RANDOM, **BOTH, clip_obs=np.inf, clip_reward=np.inf), seed=0)
    clipped = TD3("Pendulum-v1", TD3Config(**RANDOM, **BOTH, clip_obs=0.5, clip_reward=0.2), seed=0)
    free.learn(400, progress=False), clipped.learn(400, progress=False)
    for name in ("obs_rms", "return_rms"):
        for k, v in free.__dict__[name].state_dict().items():
            np.testing.assert_array_equal(clipped.__dict__[name].state_dict()[k], v)
    a, b = free.buffer, clipped.buffer
    assert np.abs(a.obs[:400]).max() > 0.5 and np.abs(a.rewards[:400]).max() > 0.2   # clipping did something
    np.testing.assert_array_equal(b.obs[:400], np.clip(a.obs[:400], -0.5, 0.5))
    np.testing.assert_array_equal(b.next_obs[:400], np.clip(a.next_obs[:400], -0.5, 0.5))
    np.testing.assert_allclose(b.rewards[:400], np.clip(a.rewards[:400], -0.2, 0.2), rtol=1e-6)
    obs = np.array([[1.0, 0.0, 8.0], [-1.0, 0.1, -8.0]], dtype=np.float32)
    np.testing.assert_array_equal(clipped.obs_rms.normalize(obs), np.clip(free.obs_rms.normalize(obs), -0.5, 0.5))
    with pytest.raises(ValueError, match="clip_obs"):
        TD3Config(clip_obs=0.0)


def test_statistics_round_trip_through_save_and_load_and_resume_exactly(tmp_path):
    config = SACConfig(**SMALL, **BOTH)
    straight = SAC("Pendulum-v1", config, seed=1).learn(500, progress=False)
    half = SAC("Pendulum-v1", config, seed=1).learn(300, progress=False)
    half.save(tmp_path / "sac.pt")
    loaded = Agent.load(tmp_path / "sac.pt")
    for name in ("obs_rms", "return_rms"):
        saved, back = getattr(half, name).state_dict(), getattr(loaded, name).state_dict()
        assert back["count"] == saved["count"] > 300
        np.testing.assert_array_equal(back["mean"], saved["mean"])
        np.testing.assert_array_equal(back["var"], saved["var"])
    np.testing.assert_array_equal(loaded.return_rms.wrapper.accumulated_reward, half.return_rms.wrapper.accumulated_reward)
    obs = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(obs), half.predict(obs))
    loaded.learn(500, progress=False)
    for net in ("pi", "q", "q_target"):
        for p, q in zip(getattr(straight, net).parameters(), getattr(loaded, net).parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    np.testing.assert_array_equal(loaded.obs_rms.state_dict()["var"], straight.obs_rms.state_dict()["var"])


def test_evaluate_and_predict_use_the_frozen_statistics():
    agent = PPO("CartPole-v1", PPOConfig(n_envs=2, n_steps=32, batch_size=32, n_epochs=1, hidden=(8,),
                                         normalize_obs=True), seed=0).learn(128, progress=False)
    before = agent.obs_rms.state_dict()
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    by_hand = np.clip((obs - before["mean"]) / np.sqrt(before["var"] + 1e-8), -10, 10)
    with torch.inference_mode():
        expected = agent.act(agent.encode(by_hand.astype(np.float32)), True).numpy()
    np.testing.assert_array_equal(agent.predict(obs), expected)
    first = agent.evaluate(episodes=4)
    assert agent.evaluate(episodes=4) == first
    after = agent.obs_rms.state_dict()
    assert after["count"] == before["count"] and np.array_equal(after["mean"], before["mean"])


def test_normalisation_errors():
    with pytest.raises(TypeError, match="normalize_obs needs a Box observation space"):
        PPO("FrozenLake-v1", PPOConfig(normalize_obs=True))
    with pytest.raises(ValueError, match="num_workers.*normalize_obs"):
        PPOConfig(normalize_obs=True, num_workers=2, n_envs=2)
