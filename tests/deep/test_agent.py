"""The common core: config validation, env handling, errors, NaN guard, evaluation, checkpoints, resume."""

import csv

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from bellman.deep import A2C, PPO, PPOConfig, Agent, AgentConfig, NonFiniteError
from bellman.deep.buffers import ReplayBuffer

TINY = dict(n_envs=2, n_steps=16, batch_size=16, n_epochs=2, hidden=(16,))


def params(agent):
    return torch.cat([p.detach().flatten() for p in agent.optimizer.param_groups[0]["params"]])


def test_unknown_config_key_names_close_match():
    with pytest.raises(ValueError, match=r"unknown PPOConfig key\(s\): 'clip_rnage' \(did you mean 'clip_range'\?\)"):
        PPOConfig.from_dict({"clip_rnage": 0.1})


@pytest.mark.parametrize("bad, match", [
    (dict(gamma=1.5), r"PPOConfig.gamma = 1.5 is invalid; allowed: a float in \[0, 1\]"),
    (dict(n_envs=0), "n_envs"),
    (dict(batch_size=-1), "batch_size"),
    (dict(clip_range_vf=0.0), "clip_range_vf"),
    (dict(activation="sigmoid"), "activation"),
])
def test_bad_config_values(bad, match):
    with pytest.raises(ValueError, match=match):
        PPOConfig(**bad)


def test_bad_config_types():
    with pytest.raises(TypeError, match="n_steps must be int"):
        PPOConfig(n_steps=2.5)
    with pytest.raises(TypeError, match="hidden must be a tuple of ints"):
        PPOConfig(hidden=(64, "a"))
    with pytest.raises(TypeError, match="needs a PPOConfig"):
        PPO("CartPole-v1", AgentConfig())


def test_parse_set_assignments():
    got = PPOConfig.parse(["hidden=32,32", "target_kl=none", "anneal_lr=true", "n_steps=64", "gamma=0.9"])
    assert got == {"hidden": (32, 32), "target_kl": None, "anneal_lr": True, "n_steps": 64, "gamma": 0.9}
    with pytest.raises(ValueError, match="unknown PPOConfig key"):
        PPOConfig.parse(["nope=1"])
    with pytest.raises(ValueError, match="cannot read it as float"):
        PPOConfig.parse(["gamma=high"])


def test_presets_then_overrides():
    c = PPOConfig.for_env("CartPole-v1", n_epochs=3)
    assert (c.n_envs, c.n_steps, c.gamma, c.n_epochs) == (8, 32, 0.98, 3)
    assert PPOConfig.for_env("Acrobot-v1") == PPOConfig()


def test_unknown_env_id_and_bad_env():
    with pytest.raises(ValueError, match="unknown env id 'CartPol-v1'; did you mean CartPole-v1"):
        PPO("CartPol-v1")
    with pytest.raises(TypeError, match="env must be an env id"):
        PPO(42)
    with pytest.raises(ValueError, match="seed must be"):
        PPO("CartPole-v1", seed=-1)


def test_action_space_type_check():
    class DiscreteOnly(A2C):
        action_spaces = (spaces.Discrete,)
    with pytest.raises(TypeError, match="DiscreteOnly needs a Discrete action space; 'Pendulum-v1' has Box"):
        DiscreteOnly("Pendulum-v1", A2C.config_class())


def test_env_instance_and_factory_give_same_numbers():
    a = PPO("CartPole-v1", PPOConfig(**TINY), seed=3).learn(64, progress=False)
    b = PPO(lambda: gym.make("CartPole-v1"), PPOConfig(**TINY, vectorized=False), seed=3).learn(64, progress=False)
    c = PPO(gym.make("CartPole-v1"), PPOConfig(**TINY), seed=3).learn(64, progress=False)
    assert torch.equal(params(b), params(c))
    assert b.step == c.step >= 64 and a.step >= 64


class NaNReward(gym.Wrapper):
    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        return obs, float("nan"), term, trunc, info


def test_nan_guard_names_step_and_quantity():
    agent = PPO(lambda: NaNReward(gym.make("CartPole-v1")), PPOConfig(**TINY), seed=0)
    with pytest.raises(NonFiniteError, match=r"PPO: (policy_loss|value_loss) became nan at step \d+") as error:
        agent.learn(1000, progress=False)
    assert 0 < agent.step <= 32 and f"at step {agent.step};" in str(error.value)  # the first iteration


def test_predict_shapes_and_determinism():
    agent = PPO("Pendulum-v1", PPOConfig(**TINY), seed=0)
    single = agent.predict(np.zeros(3, dtype=np.float32))
    assert single.shape == (1,)
    batch = agent.predict(np.zeros((5, 3), dtype=np.float32), deterministic=False)
    assert batch.shape == (5, 1) and np.all(np.abs(batch) <= 2.0)
    with pytest.raises(ValueError, match="obs must have shape"):
        agent.predict(np.zeros(4))
    assert agent.evaluate(3) == agent.evaluate(3)
    with pytest.raises(ValueError, match="episodes must be"):
        agent.evaluate(0)


def test_same_seed_same_numbers():
    a = PPO("CartPole-v1", PPOConfig(**TINY), seed=5).learn(200, progress=False)
    b = PPO("CartPole-v1", PPOConfig(**TINY), seed=5).learn(200, progress=False)
    c = PPO("CartPole-v1", PPOConfig(**TINY), seed=6).learn(200, progress=False)
    assert torch.equal(params(a), params(b)) and not torch.equal(params(a), params(c))


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_checkpoint_round_trip_and_continued_training(tmp_path, env_id):
    config = PPOConfig(**TINY)
    straight = PPO(env_id, config, seed=1).learn(192, progress=False)

    first = PPO(env_id, config, seed=1).learn(96, progress=False)
    first.save(tmp_path / "ckpt.pt")
    loaded = Agent.load(tmp_path / "ckpt.pt")
    assert type(loaded) is PPO and loaded.step == first.step and loaded.config == config
    obs = np.stack([first.observation_space.sample() for _ in range(8)])
    np.testing.assert_array_equal(loaded.predict(obs), first.predict(obs))
    loaded.learn(192, progress=False)
    assert loaded.step == straight.step
    assert torch.equal(params(loaded), params(straight))
    assert torch.equal(loaded.optimizer.state_dict()["state"][0]["exp_avg"],
                       straight.optimizer.state_dict()["state"][0]["exp_avg"])


def test_load_wrong_class(tmp_path):
    PPO("CartPole-v1", PPOConfig(**TINY)).save(tmp_path / "c.pt")
    with pytest.raises(TypeError, match="holds a PPO, not a A2C"):
        A2C.load(tmp_path / "c.pt")
    with pytest.raises(FileNotFoundError):
        PPO.load(tmp_path / "missing.pt")


def read_steps(path):
    with open(path / "metrics.csv") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def test_resume_after_crash(tmp_path, monkeypatch):
    config = PPOConfig(**TINY)
    straight = PPO("CartPole-v1", config, seed=2)
    straight.learn(320, out=tmp_path / "straight", checkpoint_every=64, log_every=32, progress=False)

    crashing = PPO("CartPole-v1", config, seed=2)
    calls = {"n": 0}
    original = crashing.train_iteration

    def crash_on_seventh():  # the 7th iteration collects and updates, then the process "dies"
        calls["n"] += 1
        metrics = original()
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return metrics
    monkeypatch.setattr(crashing, "train_iteration", crash_on_seventh)
    out = tmp_path / "crashed"
    with pytest.raises(KeyboardInterrupt):
        crashing.learn(320, out=out, checkpoint_every=64, log_every=32, progress=False)

    resumed = PPO.load(out / "checkpoint.pt")
    assert 64 <= resumed.step < crashing.step  # the last checkpoint before the crash
    resumed.learn(320, out=out, checkpoint_every=64, log_every=32, progress=False, resume=True)
    assert resumed.step == straight.step
    assert torch.equal(params(resumed), params(straight))
    # rows written after the checkpoint were dropped on resume: the log matches the uninterrupted one
    assert read_steps(out) == read_steps(tmp_path / "straight")


def test_metrics_csv_and_tensorboard(tmp_path):
    PPO("CartPole-v1", PPOConfig(**TINY), seed=0).learn(128, out=tmp_path, log_every=64, progress=False)
    # one iteration is 32 vector steps, fewer transitions when a copy spends a step on its reset
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and 64 <= int(rows[0]["step"]) < 96 and int(rows[1]["step"]) >= 128
    assert {"step", "episodic_return", "policy_loss", "value_loss", "steps_per_second"} <= set(rows[0])
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert (tmp_path / "checkpoint.pt").is_file()
    assert not list(tmp_path.glob("*.tmp"))


def test_replay_buffer_wraps_samples_and_round_trips():
    buf = ReplayBuffer(4, (2,), (), action_dtype=np.int64)
    for i in range(3):
        obs = np.array([[i, i], [10 + i, 10 + i]], dtype=np.float32)
        buf.add(obs, np.array([i, 10 + i]), np.array([1.0, 2.0]), obs + 1, np.array([0.0, 1.0]),
                valid=np.array([True, i != 1]))
    assert len(buf) == 4 and buf.pos == 1  # 5 valid rows into 4 slots: the oldest was overwritten
    assert sorted(buf.actions.tolist()) == [1, 2, 10, 12]
    batch = buf.sample(64, np.random.default_rng(0))
    assert batch["obs"].shape == (64, 2)
    np.testing.assert_array_equal(batch["next_obs"].numpy(), batch["obs"].numpy() + 1)
    np.testing.assert_array_equal(batch["obs"][:, 0].numpy(), batch["actions"].numpy())
    copy = ReplayBuffer(4, (2,), (), action_dtype=np.int64)
    copy.load_state_dict(buf.state_dict())
    a, b = copy.sample(8, np.random.default_rng(1)), buf.sample(8, np.random.default_rng(1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(2, (1,), ()).sample(1, np.random.default_rng(0))


def test_evaluate_leaves_training_untouched():
    runs = []
    for evaluate in (False, True):
        agent = PPO(gym.make("CartPole-v1"), PPOConfig(**TINY), seed=4).learn(64, progress=False)
        if evaluate:
            agent.evaluate(2)
        runs.append(params(agent.learn(128, progress=False)))
    assert torch.equal(runs[0], runs[1])
