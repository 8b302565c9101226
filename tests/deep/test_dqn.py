"""DQN: targets on hand-made numbers, Polyak updates, the eps schedule, the replay buffer, checkpoints, learning."""

import numpy as np
import pytest
import torch
from torch import nn

from bellman.deep import DQN, DQNConfig, ReplayBuffer
from bellman.deep.dqn import dqn_target, linear_schedule
from bellman.deep.targets import polyak_update

SMALL = dict(hidden=(32, 32), learning_starts=200, train_freq=50, gradient_steps=10, batch_size=32,
             target_update_interval=50, buffer_size=5_000)


def test_dqn_and_double_dqn_targets_on_hand_made_numbers():
    r = torch.tensor([1.0, 0.5, -1.0])
    terminated = torch.tensor([0.0, 1.0, 0.0])
    q_next_target = torch.tensor([[1.0, 3.0], [2.0, 5.0], [4.0, -2.0]])
    q_next_online = torch.tensor([[4.0, 0.0], [0.0, 1.0], [0.0, 7.0]])
    # DQN: r + 0.9 max_a q-(s', a); no bootstrap after termination
    torch.testing.assert_close(dqn_target(r, terminated, q_next_target, None, 0.9), torch.tensor([3.7, 0.5, 2.6]))
    # Double DQN: a* = argmax_a q(s', a) = [0, 1, 1], evaluated by the target net: [1, 5, -2]
    torch.testing.assert_close(dqn_target(r, terminated, q_next_target, q_next_online, 0.9),
                               torch.tensor([1.9, 0.5, -2.8]))


def test_polyak_update_and_hard_copy():
    target, source = nn.Linear(2, 1), nn.Linear(2, 1)
    nn.init.zeros_(target.weight), nn.init.zeros_(target.bias)
    nn.init.ones_(source.weight), nn.init.constant_(source.bias, 2.0)
    polyak_update(target, source, 0.1)
    torch.testing.assert_close(target.weight, torch.full((1, 2), 0.1))
    torch.testing.assert_close(target.bias, torch.tensor([0.2]))
    polyak_update(target, source, 0.1)  # 0.1 + 0.1 (1 - 0.1) = 0.19
    torch.testing.assert_close(target.weight, torch.full((1, 2), 0.19))
    polyak_update(target, source, 1.0)
    torch.testing.assert_close(target.weight, source.weight)
    torch.testing.assert_close(target.bias, source.bias)


def test_linear_eps_schedule():
    assert linear_schedule(1.0, 0.05, 0.1, 0.0) == 1.0
    assert linear_schedule(1.0, 0.05, 0.1, 0.05) == pytest.approx(0.525)
    assert linear_schedule(1.0, 0.05, 0.1, 0.1) == pytest.approx(0.05)
    assert linear_schedule(1.0, 0.05, 0.1, 0.7) == pytest.approx(0.05)


def test_replay_buffer_skips_reset_rows_wraps_around_and_round_trips():
    buf = ReplayBuffer(4, (2,), (), np.int64)
    obs = np.arange(6, dtype=np.float32).reshape(3, 2)
    buf.add(obs, np.array([0, 1, 2]), np.array([1.0, 2.0, 3.0]), obs + 10, np.array([0, 0, 1]),
            valid=np.array([True, False, True]))
    assert len(buf) == 2
    np.testing.assert_array_equal(buf.obs[:2], obs[[0, 2]])
    np.testing.assert_array_equal(buf.rewards[:2], [1.0, 3.0])
    np.testing.assert_array_equal(buf.terminated[:2], [0.0, 1.0])
    buf.add(obs, np.array([3, 4, 5]), np.array([4.0, 5.0, 6.0]), obs, np.zeros(3))  # 5 rows into capacity 4
    assert len(buf) == 4 and buf.pos == 1
    np.testing.assert_array_equal(buf.actions, [5, 2, 3, 4])  # the oldest row was overwritten
    batch = buf.sample(64, np.random.default_rng(0))
    assert batch["obs"].shape == (64, 2) and batch["actions"].dtype == torch.int64
    assert set(batch["actions"].tolist()) == {2, 3, 4, 5}
    # every sampled transition is a stored one: reward = action + 1 for the rows added second
    assert all(r == a + 1 for a, r in zip(batch["actions"].tolist(), batch["rewards"].tolist()) if a >= 3)
    copy = ReplayBuffer(4, (2,), (), np.int64)
    copy.load_state_dict(buf.state_dict())
    for key in ("obs", "next_obs", "actions", "rewards", "terminated"):
        np.testing.assert_array_equal(getattr(copy, key), getattr(buf, key))
    assert (copy.pos, copy.size) == (buf.pos, buf.size)


def test_dqn_config_and_action_space_errors():
    with pytest.raises(TypeError, match="Discrete action space"):
        DQN("Pendulum-v1")
    with pytest.raises(ValueError, match="loss"):
        DQNConfig(loss="l1")
    with pytest.raises(ValueError, match="tau"):
        DQNConfig(tau=0.0)
    with pytest.raises(ValueError, match="unknown DQNConfig key"):
        DQNConfig.from_dict({"target_update": 5})
    assert DQNConfig.for_env("CartPole-v1").gradient_steps == 128  # as in the rl-baselines3-zoo setting


def test_cartpole_preset_is_the_zoo_setting_with_a_lower_annealed_rate_and_more_final_exploration():
    zoo = DQNConfig.from_dict(DQNConfig.zoo_presets["CartPole-v1"])
    assert (zoo.learning_rate, zoo.anneal_lr, zoo.exploration_final_eps) == (2.3e-3, False, 0.04)
    own = DQNConfig.for_env("CartPole-v1")
    assert own == zoo.replace(learning_rate=1e-3, anneal_lr=True, exploration_final_eps=0.1)


@pytest.mark.parametrize("double", [False, True])
def test_dqn_checkpoint_round_trip_and_continued_training(tmp_path, double):
    config = DQNConfig(**SMALL, double=double)
    straight = DQN("CartPole-v1", config, seed=3).learn(800, progress=False)
    half = DQN("CartPole-v1", config, seed=3).learn(400, progress=False)
    half.save(tmp_path / "dqn.pt")
    resumed = DQN.load(tmp_path / "dqn.pt")
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    np.testing.assert_array_equal(resumed.predict(obs), half.predict(obs))
    resumed.learn(800, progress=False)
    for p, q in zip(straight.q.parameters(), resumed.q.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    for p, q in zip(straight.q_target.parameters(), resumed.q_target.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert resumed.epsilon == pytest.approx(config.exploration_final_eps)


def test_dqn_learns_cartpole_quickly():
    zoo = DQNConfig.zoo_presets["CartPole-v1"]
    config = DQNConfig.from_dict({**zoo, "hidden": (64, 64), "train_freq": 64, "gradient_steps": 32})
    agent = DQN("CartPole-v1", config, seed=0).learn(6_000, progress=False)
    mean, _ = agent.evaluate(episodes=10)
    assert mean >= 100  # an untrained greedy policy balances about 10 steps; the full run reaches 500


def test_anneal_lr_decays_the_learning_rate_linearly():
    config = DQNConfig(**SMALL, anneal_lr=True)
    agent = DQN("CartPole-v1", config, seed=0)
    agent.total_steps = 1_000  # what learn(1_000) sets; step through its iterations by hand
    while agent.step < 500:
        agent.train_iteration()
    assert agent.optimizer.param_groups[0]["lr"] == pytest.approx(config.learning_rate * (1 - agent.step / 1_000))
    agent.learn(1_000, progress=False)
    assert agent.optimizer.param_groups[0]["lr"] == 0.0  # the last phase starts at step 1000
    constant = DQN("CartPole-v1", DQNConfig(**SMALL), seed=0).learn(1_000, progress=False)
    assert constant.optimizer.param_groups[0]["lr"] == config.learning_rate


@pytest.mark.parametrize("flush", [True, False])
def test_flush_denormal_setting_is_applied(flush):
    agent = DQN("CartPole-v1", DQNConfig(**SMALL, flush_denormal=flush), seed=0)
    tiny = torch.tensor([1e-39])  # a denormal float32
    with agent.runtime():  # what learn / evaluate run under
        assert ((tiny * 1.0).item() == 0.0) is flush
    assert (tiny * 1.0).item() != 0.0  # and the rest of the process keeps PyTorch's default
