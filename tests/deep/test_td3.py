"""TD3: the smoothed clipped double-Q target against hand-computed numbers, the delayed actor updates,
checkpoints and resumption, errors, learning Pendulum."""

import numpy as np
import pytest
import torch

from bellman.deep import TD3, TD3Config, algorithm
from bellman.deep.nets import TwinCritic
from bellman.deep.td3 import clipped_double_q_target, smoothed_target_action

SMALL = dict(hidden=(32, 32), learning_starts=200, batch_size=32, buffer_size=5_000, train_freq=4, gradient_steps=2)


def test_smoothed_clipped_double_q_target_by_hand():
    mu_next = torch.tensor([[0.9, -0.2], [0.1, -0.95]])
    eps = torch.tensor([[0.7, -0.3], [-0.1, -0.2]])
    # clip(eps, -0.5, 0.5) = [[0.5, -0.3], [-0.1, -0.2]]; mu + that = [[1.4, -0.5], [0.0, -1.15]]; clip to [-1, 1]
    a = smoothed_target_action(mu_next, eps, noise_clip=0.5)
    torch.testing.assert_close(a, torch.tensor([[1.0, -0.5], [0.0, -1.0]]))
    q_next = torch.tensor([[1.0, 3.0, -2.0], [2.0, 1.0, -1.0]])  # q_1 and q_2 at (s', a~) for 3 transitions
    r, terminated = torch.tensor([0.5, 1.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    # min = [1, 1, -2]: y = [0.5 + 0.9 * 1, 1 + 0, 0 + 0.9 * -2]
    torch.testing.assert_close(clipped_double_q_target(r, terminated, q_next, 0.9), torch.tensor([1.4, 1.0, -1.8]))


def test_twin_critic_is_two_independent_mlps():
    critic = TwinCritic(TD3("Pendulum-v1", TD3Config(**SMALL)).observation_space, 1, (5, 4), "relu")
    obs, a = torch.randn(7, 3), torch.rand(7, 1) * 2 - 1
    q = critic(obs, a)
    assert q.shape == (2, 7)
    for i in range(2):  # network i by hand: relu layers, then the linear head
        x = torch.cat([obs, a], -1)
        for w, b in critic.layers[:-1]:
            x = torch.relu(x @ w[i] + b[i])
        w, b = critic.layers[-1]
        torch.testing.assert_close(q[i], (x @ w[i] + b[i]).squeeze(-1))
    assert not torch.equal(critic.weights[0][0], critic.weights[0][1])
    bound = 1 / np.sqrt(4)  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert critic.weights[1].abs().max() <= bound and critic.biases[1].abs().max() <= bound


@pytest.mark.parametrize("delay", [1, 3])
def test_actor_and_targets_update_every_policy_delay_steps(delay):
    agent = TD3("Pendulum-v1", TD3Config(**{**SMALL, "train_freq": 1, "gradient_steps": 1}, policy_delay=delay),
                seed=0)
    while agent.step < agent.config.learning_starts:
        agent.train_iteration()
    flat = lambda net: torch.cat([p.detach().flatten() for p in net.parameters()]).clone()  # noqa: E731
    actor_changes = target_changes = critic_changes = 0
    for _ in range(12):
        before = [flat(agent.mu), flat(agent.mu_target), flat(agent.q)]
        metrics = agent.train_iteration()
        after = [flat(agent.mu), flat(agent.mu_target), flat(agent.q)]
        changed = [not torch.equal(x, y) for x, y in zip(before, after)]
        actor_changes += changed[0]
        target_changes += changed[1]
        critic_changes += changed[2]
        assert ("actor_loss" in metrics) == changed[0] == (agent.n_updates % delay == 0)
    assert agent.n_updates == 12 + 1  # the first update came with the step that reached learning_starts
    assert critic_changes == 12 and actor_changes == target_changes == len([n for n in range(2, 14) if n % delay == 0])


def test_td3_checkpoint_round_trip_and_continued_training(tmp_path):
    config = TD3Config(**{**SMALL, "gradient_steps": 3})
    straight = TD3("Pendulum-v1", config, seed=2).learn(500, progress=False)
    half = TD3("Pendulum-v1", config, seed=2).learn(300, progress=False)  # 27 x 3 updates: mid-delay
    assert half.n_updates % 2 == 1
    half.save(tmp_path / "td3.pt")
    resumed = algorithm("td3").load(tmp_path / "td3.pt")
    assert isinstance(resumed, TD3) and resumed.n_updates == half.n_updates
    obs = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    np.testing.assert_array_equal(resumed.predict(obs), half.predict(obs))
    resumed.learn(500, progress=False)
    for net in ("mu", "q", "mu_target", "q_target"):
        for p, q in zip(getattr(straight, net).parameters(), getattr(resumed, net).parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_td3_config_errors():
    with pytest.raises(ValueError, match="TD3Config.policy_delay = 0 is invalid"):
        TD3Config(policy_delay=0)
    with pytest.raises(ValueError, match="target_noise_clip"):
        TD3Config(target_noise_clip=-0.1)
    with pytest.raises(TypeError, match="Box action space"):
        TD3("CartPole-v1")


def test_td3_learns_pendulum_quickly():
    config = TD3Config(hidden=(64, 64), learning_starts=1000, batch_size=128, gamma=0.98)
    agent = TD3("Pendulum-v1", config, seed=1).learn(10_000, progress=False)  # seeds 0, 2: -299, -186
    mean, _ = agent.evaluate(episodes=10)
    assert mean > -400  # random torques score about -1200; swinging up and holding about -150
