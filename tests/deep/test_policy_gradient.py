"""REINFORCE, A2C and TRPO: the policy-gradient estimate against finite differences, conjugate gradient,
the TRPO step within its KL bound, and quick seeded learning runs."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import kl_divergence

from bellman.deep import A2C, REINFORCE, TRPO, A2CConfig, REINFORCEConfig, TRPOConfig
from bellman.deep.nets import Policy
from bellman.deep.reinforce import reinforce_loss
from bellman.deep.rollout import collect_rollout
from bellman.deep.trpo import conjugate_gradient

REWARD = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)  # a three-armed bandit with one state


def bandit_policy():
    torch.manual_seed(0)
    obs_space = gym.spaces.Box(-1.0, 1.0, (2,))
    pi = Policy(obs_space, gym.spaces.Discrete(3), hidden=(4,), activation="tanh").double()
    with torch.no_grad():
        pi.net[-1].weight.mul_(100.0)  # a less uniform policy than the 0.01-gain initialisation
    return pi, torch.tensor([[0.3, -0.7]], dtype=torch.float64)


def exact_j(pi, s):
    """J(theta) = sum_a pi(a|s) r(a)."""
    return (pi.net(s).softmax(-1)[0] * REWARD).sum()


def finite_difference_grad(pi, s, eps=1e-6):
    grads = []
    with torch.no_grad():
        for p in pi.parameters():
            flat = p.view(-1)
            for i in range(flat.numel()):
                old = flat[i].item()
                flat[i] = old + eps
                up = exact_j(pi, s).item()
                flat[i] = old - eps
                down = exact_j(pi, s).item()
                flat[i] = old
                grads.append((up - down) / (2 * eps))
    return np.array(grads)


def flat_grad(pi):
    return np.concatenate([p.grad.detach().numpy().ravel() for p in pi.parameters()])


def test_policy_gradient_theorem_exact_expectation():
    pi, s = bandit_policy()
    expected = finite_difference_grad(pi, s)
    actions = torch.arange(3)
    log_p, _ = pi.log_prob_entropy(s.expand(3, 2), actions)
    weight = log_p.exp().detach()
    # E_a[grad ln pi(a|s) r(a)] = sum_a pi(a|s) grad ln pi(a|s) r(a); reinforce_loss is minus a mean
    (reinforce_loss(log_p, weight * REWARD) * 3).backward()
    np.testing.assert_allclose(-flat_grad(pi), expected, rtol=1e-6, atol=1e-9)


def test_reinforce_sample_estimate_matches_finite_differences():
    pi, s = bandit_policy()
    expected = finite_difference_grad(pi, s)
    torch.manual_seed(1)
    n = 200_000
    with torch.no_grad():
        actions, _ = pi.sample(s.expand(n, 2))
    log_p, _ = pi.log_prob_entropy(s.expand(n, 2), actions)
    reinforce_loss(log_p, REWARD[actions]).backward()
    estimate = -flat_grad(pi)
    assert np.linalg.norm(estimate - expected) < 0.02 * np.linalg.norm(expected) + 1e-3


def test_conjugate_gradient_solves_spd_system():
    g = np.random.default_rng(0)
    m = g.normal(size=(6, 6))
    a = torch.tensor(m @ m.T + 6 * np.eye(6))
    b = torch.tensor(g.normal(size=6))
    x = conjugate_gradient(lambda v: a @ v, b, n_iters=20)
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(a.numpy(), b.numpy()), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_trpo_step_satisfies_kl_bound_and_improves_surrogate(env_id):
    config = TRPOConfig(n_envs=2, n_steps=256, hidden=(32,), target_kl=0.005)
    agent = TRPO(env_id, config, seed=0)
    buf = agent.buffer
    collect_rollout(agent, buf, lambda s: (*agent.pi.sample(s), agent.v(s)), agent.v)
    obs, actions, old_log_p = buf.flat(buf.obs), buf.flat(buf.actions), buf.flat(buf.log_probs)
    advantages = torch.randn(len(obs), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        old_dist = agent.pi(obs)
    before = [p.detach().clone() for p in agent.pi.parameters()]
    metrics = agent.policy_step(obs, actions, advantages, old_log_p)
    with torch.no_grad():
        kl = kl_divergence(old_dist, agent.pi(obs)).mean().item()
        log_p, _ = agent.pi.log_prob_entropy(obs, actions)
        gain = ((log_p - old_log_p).exp() * advantages).mean().item() - advantages.mean().item()
    assert any(not torch.equal(b, p) for b, p in zip(before, agent.pi.parameters()))
    assert 0 < kl <= 0.005 and kl == pytest.approx(metrics["kl"], rel=1e-4)
    assert gain > 0 and gain == pytest.approx(metrics["surrogate_gain"], rel=1e-3)


def test_reinforce_learns_cartpole():
    agent = REINFORCE("CartPole-v1", REINFORCEConfig(), seed=0)
    agent.learn(40_000, progress=False)
    assert agent.evaluate(10)[0] >= 150


def test_reinforce_without_baseline_learns():
    agent = REINFORCE("CartPole-v1", REINFORCEConfig(baseline=False), seed=0)
    assert not hasattr(agent, "v")
    agent.learn(20_000, progress=False)
    assert np.mean(list(agent.recent_returns)[-16:]) >= 50


@pytest.mark.parametrize("advantage", ["gae", "nstep"])
def test_a2c_learns_cartpole(advantage):
    agent = A2C("CartPole-v1", A2CConfig.for_env("CartPole-v1", advantage=advantage), seed=0)
    agent.learn(25_000, progress=False)
    assert np.mean(list(agent.recent_returns)[-20:]) >= 100


def test_trpo_learns_cartpole():
    agent = TRPO("CartPole-v1", TRPOConfig.for_env("CartPole-v1"), seed=0)
    agent.learn(20_000, progress=False)
    assert agent.evaluate(10)[0] >= 200
