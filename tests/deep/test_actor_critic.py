"""QAC and off-policy actor-critic: importance weights, behaviour policy, checkpoints, errors, learning."""

import math

import numpy as np
import pytest
import torch

from bellman.deep import QAC, OffPolicyAC, OffPolicyACConfig, QACConfig
from bellman.deep.off_policy_ac import behavior_probs, importance_weights


def test_importance_weights_and_behaviour_policy_on_hand_made_numbers():
    rho = importance_weights(torch.log(torch.tensor([0.5, 0.2, 0.9])), torch.log(torch.tensor([0.25, 0.4, 0.9])))
    torch.testing.assert_close(rho, torch.tensor([2.0, 0.5, 1.0]))
    pi = torch.tensor([[0.7, 0.3], [1.0, 0.0]])
    torch.testing.assert_close(behavior_probs(pi, 0.5), torch.tensor([[0.6, 0.4], [0.75, 0.25]]))
    torch.testing.assert_close(behavior_probs(pi, 1.0), torch.full((2, 2), 0.5))
    torch.testing.assert_close(behavior_probs(pi, 0.0), pi)


def test_on_policy_limit_has_unit_importance_weights():
    agent = OffPolicyAC("CartPole-v1", OffPolicyACConfig(behavior_eps=0.0, n_envs=4), seed=0)
    for _ in range(5):
        assert agent.train_iteration()["rho"] == pytest.approx(1.0, abs=1e-6)
    agent = OffPolicyAC("CartPole-v1", OffPolicyACConfig(behavior_eps=1.0, n_envs=64), seed=0)
    # uniform behaviour, pi about uniform at the start: rho = pi(a|s) / 0.5 is about 1
    assert agent.train_iteration()["rho"] == pytest.approx(1.0, abs=0.05)


def test_errors():
    with pytest.raises(TypeError, match="Discrete action space"):
        QAC("Pendulum-v1")
    with pytest.raises(TypeError, match="Discrete action space"):
        OffPolicyAC("Pendulum-v1")
    with pytest.raises(ValueError, match="behavior_eps"):
        OffPolicyACConfig(behavior_eps=1.5)
    with pytest.raises(ValueError, match="critic_learning_rate"):
        QACConfig(critic_learning_rate=0.0)


@pytest.mark.parametrize("cls", [QAC, OffPolicyAC])
def test_checkpoint_round_trip_and_continued_training(tmp_path, cls):
    config = cls.config_class(n_envs=2, hidden=(16,))
    straight = cls("CartPole-v1", config, seed=5).learn(400, progress=False)
    half = cls("CartPole-v1", config, seed=5).learn(200, progress=False)
    half.save(tmp_path / "ac.pt")
    resumed = cls.load(tmp_path / "ac.pt")
    obs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    np.testing.assert_array_equal(resumed.predict(obs), half.predict(obs))
    resumed.learn(400, progress=False)
    for p, q in zip(straight.pi.parameters(), resumed.pi.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize("cls", [QAC, OffPolicyAC])
def test_learns_cartpole_measurably(cls):
    agent = cls("CartPole-v1", seed=0)
    before, _ = agent.evaluate(episodes=10)
    agent.learn(15_000, progress=False)
    after, _ = agent.evaluate(episodes=10)
    assert before < 20 and after >= 100 and math.isfinite(after)
