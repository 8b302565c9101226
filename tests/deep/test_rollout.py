"""Rollout collection: the agent steps its environments, the buffer stores what it is given."""

import numpy as np
import torch

from bellman.deep import PPO, PPOConfig
from bellman.deep.agent import Transition
from bellman.deep.buffers import RolloutBuffer
from bellman.deep.rollout import collect_rollout, transition_batch


def test_buffer_stores_rows_and_flat_keeps_the_valid_ones():
    buf = RolloutBuffer(2, 2, obs_dim=1, action_shape=(), discrete=True)
    no, yes = np.array([False, False]), np.array([True, True])
    buf.store_action(0, np.array([[1.0], [2.0]]), np.array([0, 1]), np.array([-0.5, -0.7]), np.array([3.0, 4.0]))
    buf.store_outcome(0, Transition(None, None, np.array([1.0, 2.0]), None, np.array([True, False]), no, yes))
    buf.store_action(1, np.array([[5.0], [6.0]]), np.array([1, 1]), np.array([-0.1, -0.2]), np.array([7.0, 8.0]))
    buf.store_outcome(1, Transition(None, None, np.array([0.0, 9.0]), None, no, np.array([False, True]),
                                    np.array([False, True])))
    buf.store_last_value(np.array([10.0, 11.0]))
    assert buf.values[:, 1].tolist() == [4.0, 8.0, 11.0]
    assert buf.dones.tolist() == [[True, False], [False, True]] and buf.terminated[:, 0].tolist() == [True, False]
    assert buf.flat(buf.obs)[:, 0].tolist() == [1.0, 2.0, 6.0]          # row (1, 0) is a reset step
    assert buf.flat(buf.rewards).tolist() == [1.0, 2.0, 9.0]


def test_collect_rollout_records_what_the_agent_did():
    agent = PPO("CartPole-v1", PPOConfig(n_envs=2, n_steps=8, hidden=(8,)), seed=0)
    twin = PPO("CartPole-v1", PPOConfig(n_envs=2, n_steps=8, hidden=(8,)), seed=0)

    def act(s):  # push left, ln pi = -1, v(s) = the cart's position
        return torch.zeros(len(s), dtype=torch.long), -torch.ones(len(s)), s[:, 0]

    collect_rollout(agent, agent.buffer, act, lambda s: s[:, 0])
    buf = agent.buffer
    for t in range(8):
        s = twin.encode(twin.obs)
        step = twin.env_step(np.zeros(2, dtype=np.int64))
        assert torch.equal(buf.obs[t], s) and torch.equal(buf.values[t], s[:, 0])
        assert buf.rewards[t].tolist() == step.reward.tolist() and buf.valid[t].tolist() == step.valid.tolist()
        assert buf.dones[t].tolist() == (step.terminated | step.truncated).tolist()
    assert torch.equal(buf.values[-1], twin.encode(twin.obs)[:, 0]) and agent.step == twin.step == 16
    assert (buf.actions == 0).all() and (buf.log_probs == -1).all()


def test_transition_batch_keeps_the_valid_rows():
    agent = PPO("CartPole-v1", PPOConfig(n_envs=3, n_steps=8, hidden=(8,)), seed=0)
    step = Transition(None, None, np.array([1.0, 2.0, 3.0]), np.arange(12.0).reshape(3, 4),
                      np.array([False, True, False]), np.zeros(3, dtype=bool), np.array([True, True, False]))
    valid, next_obs, r, terminated = transition_batch(agent, step)
    assert valid.tolist() == [True, True, False] and next_obs.tolist() == [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]
    assert r.tolist() == [1.0, 2.0] and terminated.tolist() == [0.0, 1.0]
