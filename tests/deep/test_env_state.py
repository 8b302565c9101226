"""Environment state as plain data: a vector env restored from `capture` continues exactly like the original;
an agent trained on a factory needs it again on load; run directories refuse mixed runs."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import bellman.envs  # noqa: F401 - registers bellman/GridWorld-v0
from bellman.core import checkpoint
from bellman.core.run import RunExistsError, RunMismatchError
from bellman.deep import PPO, Agent, PPOConfig
from bellman.deep import env_state
from bellman.deep.agent import make_vec_env

TINY = dict(n_envs=2, n_steps=16, batch_size=16, n_epochs=2, hidden=(16,))


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "MountainCar-v0", "Acrobot-v1", "FrozenLake-v1",
                                    "Blackjack-v1", "bellman/GridWorld-v0"])
def test_restored_envs_continue_identically(env_id, tmp_path):
    saved = make_vec_env(env_id, 3)
    saved.reset(seed=1)
    saved.action_space.seed(0)
    for _ in range(7):
        saved.step(saved.action_space.sample())
    state = env_state.capture(saved)
    assert state["opaque"] == []
    checkpoint.save({"envs": state}, tmp_path / "e.pt")  # plain data: the checkpoint takes it as it is
    restored = make_vec_env(env_id, 3)
    restored.reset(seed=99)
    env_state.restore(restored, checkpoint.load(tmp_path / "e.pt")["envs"])
    saved.action_space.seed(5)
    for action in [saved.action_space.sample() for _ in range(200)]:
        for a, b in zip(saved.step(action)[:4], restored.step(action)[:4]):
            np.testing.assert_array_equal(a, b)


def test_restore_refuses_another_construction():
    state = env_state.capture(make_vec_env("CartPole-v1", 2))
    with pytest.raises(ValueError, match="the saved environment is a CartPoleVectorEnv"):
        env_state.restore(make_vec_env("Pendulum-v1", 2), state)


def test_factory_trained_agent_needs_its_env_again(tmp_path):
    factory = lambda: gym.make("CartPole-v1")  # noqa: E731
    config = PPOConfig(**TINY, vectorized=False)
    straight = PPO(factory, config, seed=3).learn(128, progress=False)
    first = PPO(factory, config, seed=3).learn(64, progress=False)
    first.save(tmp_path / "f.pt")
    with pytest.raises(ValueError, match=r"env factory or object.*pass it again: Agent.load\(path, env=...\)"):
        Agent.load(tmp_path / "f.pt")
    resumed = Agent.load(tmp_path / "f.pt", env=factory).learn(128, progress=False)
    assert torch.equal(torch.cat([p.flatten() for p in resumed.ac.parameters()]),
                       torch.cat([p.flatten() for p in straight.ac.parameters()]))
    made = PPO(gym.make("CartPole-v1", sutton_barto_reward=True), PPOConfig(**TINY), seed=0)
    made.save(tmp_path / "m.pt")  # gym.make(id, **kwargs): rebuilt from its spec
    assert Agent.load(tmp_path / "m.pt").envs.envs[0].unwrapped._sutton_barto_reward is True


def test_run_directory_rules(tmp_path):
    PPO("CartPole-v1", PPOConfig(**TINY), seed=0).learn(64, out=tmp_path / "r", progress=False)
    with pytest.raises(RunExistsError, match="already holds a run; pass resume=True"):
        PPO("CartPole-v1", PPOConfig(**TINY), seed=0).learn(128, out=tmp_path / "r", progress=False)
    with pytest.raises(RunMismatchError, match="env: 'CartPole-v1' there, 'Acrobot-v1' here"):
        PPO("Acrobot-v1", PPOConfig(**TINY), seed=0).learn(128, out=tmp_path / "r", progress=False, resume=True)
    with pytest.raises(RunMismatchError, match="seed: 0 there, 1 here"):
        PPO("CartPole-v1", PPOConfig(**TINY), seed=1).learn(128, out=tmp_path / "r", progress=False, resume=True)
    # resume into a fresh agent continues the saved run (loaded in place) to the new total
    agent = PPO("CartPole-v1", PPOConfig(**TINY), seed=0).learn(128, out=tmp_path / "r", progress=False, resume=True)
    assert agent.step >= 128 and checkpoint.load(tmp_path / "r" / "checkpoint.prev.pt")["step"] >= 64
