"""Networks: the fast log-prob / entropy / sampling paths against torch.distributions, and ActorCritic
against two separate MLPs."""

import gymnasium as gym
import numpy as np
import torch

from bellman.deep.nets import ActorCritic, Policy, ValueNet, mlp, obs_to_tensor

BOX_OBS = gym.spaces.Box(-1.0, 1.0, (3,))


def test_fast_paths_match_torch_distributions():
    torch.manual_seed(0)
    obs = torch.randn(6, 3)
    for space in (gym.spaces.Discrete(4), gym.spaces.Box(-2.0, 2.0, (2,))):
        pi = Policy(BOX_OBS, space, hidden=(8,), log_std_init=-0.3)
        with torch.no_grad():
            pi.net[-1].weight.mul_(50.0)
        dist = pi(obs)
        action, log_p = pi.sample(obs)
        torch.testing.assert_close(log_p, dist.log_prob(action))
        log_p2, entropy = pi.log_prob_entropy(obs, action)
        torch.testing.assert_close(log_p2, dist.log_prob(action))
        torch.testing.assert_close(entropy, dist.entropy())


def test_categorical_sampling_frequencies():
    torch.manual_seed(0)
    pi = Policy(BOX_OBS, gym.spaces.Discrete(3), hidden=(4,))
    with torch.no_grad():
        pi.net[-1].weight.zero_()
        pi.net[-1].bias.copy_(torch.log(torch.tensor([0.2, 0.3, 0.5])))
    actions, _ = pi.sample(torch.zeros(100_000, 3))
    freq = torch.bincount(actions, minlength=3).float() / len(actions)
    np.testing.assert_allclose(freq.numpy(), [0.2, 0.3, 0.5], atol=0.01)


def test_actor_critic_equals_two_networks():
    torch.manual_seed(0)
    space = gym.spaces.Discrete(2)
    ac = ActorCritic(BOX_OBS, space, hidden=(16, 8))
    pi, v = Policy(BOX_OBS, space, hidden=(16, 8)), ValueNet(BOX_OBS, hidden=(16, 8))
    with torch.no_grad():
        for k, (w, b) in enumerate(zip(ac.weights, ac.biases)):
            pi.net[2 * k].weight.copy_(w[0].T)
            pi.net[2 * k].bias.copy_(b[0, 0])
            v.net[2 * k].weight.copy_(w[1].T[: v.net[2 * k].weight.shape[0]])
            v.net[2 * k].bias.copy_(b[1, 0, : v.net[2 * k].bias.shape[0]])
    obs = torch.randn(5, 3)
    out, value = ac(obs)
    torch.testing.assert_close(out, pi.net(obs))
    torch.testing.assert_close(value, v(obs))
    assert ac.weights[-1][1, :, 1:].abs().sum() == 0  # the value head reads output 0 only


def test_actor_critic_initialisations():
    """ortho_init: orthogonal layers (W W^T = gain^2 I; policy head 0.01, value head 1), zero biases; False:
    nn.Linear's own draws (the same numbers as Linear layers made in the same order from the same seed)."""
    space = gym.spaces.Box(-1.0, 1.0, (2,))
    ortho = ActorCritic(BOX_OBS, space, hidden=(16, 8), activation="relu")
    w0 = ortho.weights[0][0].T  # (16, 3): orthonormal columns, scaled
    torch.testing.assert_close(w0.T @ w0, 2.0 * torch.eye(3), atol=1e-5, rtol=0)
    head = ortho.weights[-1]
    torch.testing.assert_close(head[0].T @ head[0], 1e-4 * torch.eye(2), atol=1e-7, rtol=0)  # (8, 2) pi head
    assert torch.isclose(head[1][:, 0].norm(), torch.tensor(1.0)) and head[1][:, 1:].abs().sum() == 0
    assert all(b.abs().sum() == 0 for b in ortho.biases)
    torch.manual_seed(3)
    plain = ActorCritic(BOX_OBS, space, hidden=(16, 8), activation="relu", ortho_init=False)
    torch.manual_seed(3)
    for k, (n_in, n_out) in enumerate([(3, 16), (16, 8), (8, 2)]):
        pi, v = torch.nn.Linear(n_in, n_out), torch.nn.Linear(n_in, 1 if k == 2 else n_out)
        assert torch.equal(plain.weights[k][0], pi.weight.T) and torch.equal(plain.biases[k][0, 0], pi.bias)
        assert torch.equal(plain.weights[k][1, :, :v.out_features], v.weight.T)
        assert torch.equal(plain.biases[k][1, 0, :v.out_features], v.bias)
    assert plain.weights[-1][1, :, 1:].abs().sum() == 0


def test_mlp_and_obs_encoding():
    net = mlp(3, (5,), 2)
    assert [type(m).__name__ for m in net] == ["Linear", "Tanh", "Linear"]
    one_hot = obs_to_tensor(np.array([0, 2]), gym.spaces.Discrete(3))
    assert one_hot.tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    assert obs_to_tensor(np.zeros((2, 2, 2)), gym.spaces.Box(0, 1, (2, 2))).shape == (2, 4)
