"""Small networks shared by the deep RL algorithms.

`mlp` builds the usual fully connected body with orthogonal initialisation (Engstrom et al. 2020,
"Implementation Matters in Deep RL"; the CleanRL / Stable-Baselines3 convention: gain sqrt(2) for
hidden layers, a small gain for the policy head, 1 for the value head). `Policy` maps observations to
a torch distribution over actions: categorical logits for `Discrete`, a diagonal Gaussian with a
state-independent log standard deviation for `Box` (Sutton & Barto 2018, section 13.7). `ActorCritic`
holds a policy and a value MLP evaluated as one batched network (fewer, larger kernels); `TwinCritic` the
two q-functions of TD3 and SAC the same way.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from gymnasium import spaces
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def _flat_dim(space: spaces.Space, what: str) -> int:
    if isinstance(space, spaces.Box):
        return int(np.prod(space.shape))
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    raise TypeError(f"{what} space {space} is not supported; allowed: Box or Discrete")


def obs_dim(space: spaces.Space) -> int:
    """Input size of a network reading observations from `space` (Box: flattened, Discrete: one-hot)."""
    return _flat_dim(space, "observation")


def obs_to_tensor(obs: np.ndarray, space: spaces.Space, device: str | torch.device = "cpu") -> torch.Tensor:
    """A batch of observations as a float32 tensor (batch, obs_dim): Box flattened, Discrete one-hot."""
    if isinstance(space, spaces.Discrete):
        index = torch.as_tensor(np.asarray(obs, dtype=np.int64) - int(space.start), device=device)
        return nn.functional.one_hot(index.reshape(-1), int(space.n)).float()
    x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=device)
    return x.reshape(x.shape[0], -1) if x.dim() > 1 else x.reshape(1, -1)


def activation_class(name: str) -> type[nn.Module]:
    """The activation module called `name` (a key of ACTIVATIONS)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r} is not supported; allowed: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, activation: str = "tanh",
        out_gain: float = 1.0) -> nn.Sequential:
    """in_dim -> hidden... -> out_dim, orthogonal weights (gain sqrt 2 inside, `out_gain` last), zero biases."""
    act = activation_class(activation)
    sizes = (in_dim, *hidden, out_dim)
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        linear = nn.Linear(n_in, n_out)
        nn.init.orthogonal_(linear.weight, out_gain if last else math.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(act())
    return nn.Sequential(*layers)


def torch_default_init(net: nn.Module) -> nn.Module:
    """Give every nn.Linear of `net` PyTorch's default initialisation (that of Stable-Baselines3's off-policy
    networks, under which the rl-baselines3-zoo settings of DQN, TD3 and SAC were tuned)."""
    for layer in net.modules():
        if isinstance(layer, nn.Linear):
            layer.reset_parameters()
    return net


def action_dim(action_space: spaces.Space) -> int:
    """Output size of a policy head: logits for Discrete, the Gaussian mean for Box."""
    return _flat_dim(action_space, "action")


class ActionDistribution(nn.Module):
    """The distribution maths on a policy network's output `out`: logits for Discrete actions, the mean mu(s)
    of a diagonal Gaussian N(mu(s), diag sigma^2) with a state-independent learned log sigma for Box."""

    def __init__(self, action_space: spaces.Space, log_std_init: float = 0.0):
        super().__init__()
        self.n_out = action_dim(action_space)
        self.continuous = isinstance(action_space, spaces.Box)
        self.log_std = nn.Parameter(torch.full((self.n_out,), float(log_std_init))) if self.continuous else None

    def distribution(self, out: torch.Tensor) -> Distribution:
        if self.continuous:
            return Independent(Normal(out, self.log_std.exp().expand_as(out), validate_args=False), 1)
        return Categorical(logits=out, validate_args=False)

    def mode_of(self, out: torch.Tensor) -> torch.Tensor:
        """The most likely action: argmax of the logits, or the Gaussian mean."""
        return out if self.continuous else out.argmax(-1)

    def sample_from(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a ~ pi(.|s) and ln pi(a|s), without building a Distribution (the rollout's fast path)."""
        if self.continuous:
            noise = torch.randn_like(out)
            return out + self.log_std.exp() * noise, (-0.5 * noise.pow(2) - self.log_std - _HALF_LOG_2PI).sum(-1)
        log_p = out.log_softmax(-1)
        u = torch.rand(out.shape[:-1] + (1,))  # inverse-CDF sampling: cheaper than torch.multinomial
        action = (log_p.exp().cumsum(-1) < u).sum(-1).clamp_(max=out.shape[-1] - 1)
        return action, log_p.gather(-1, action.unsqueeze(-1)).squeeze(-1)

    def log_prob_entropy_of(self, out: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ln pi(a|s) and the entropy H(pi(.|s)) for a batch (the update's fast path)."""
        if self.continuous:
            z = (action - out) / self.log_std.exp()
            log_prob = (-0.5 * z.pow(2) - self.log_std - _HALF_LOG_2PI).sum(-1)
            return log_prob, (0.5 + _HALF_LOG_2PI + self.log_std).sum().expand_as(log_prob)
        log_p = out.log_softmax(-1)
        return log_p.gather(-1, action.long().unsqueeze(-1)).squeeze(-1), -(log_p.exp() * log_p).sum(-1)


class Policy(ActionDistribution):
    """pi(a|s, theta): an MLP to logits (Discrete) or to the Gaussian mean (Box)."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space,
                 hidden: tuple[int, ...] = (64, 64), activation: str = "tanh", log_std_init: float = 0.0):
        super().__init__(action_space, log_std_init)
        self.net = mlp(obs_dim(observation_space), hidden, self.n_out, activation, out_gain=0.01)

    def forward(self, obs: torch.Tensor) -> Distribution:
        """The action distribution pi(.|s) for a batch of encoded observations."""
        return self.distribution(self.net(obs))

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mode_of(self.net(obs))

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sample_from(self.net(obs))

    def log_prob_entropy(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.log_prob_entropy_of(self.net(obs), action)


class ActorCritic(ActionDistribution):
    """pi(a|s) and v(s) as two separate MLPs of the same shape, evaluated together: each layer of both is one
    batched matrix product (torch.baddbmm over a leading axis of 2), half the kernels of two networks.
    No weights are shared; the initialisation is that of `mlp` (value head gain 1, policy head 0.01), or with
    `ortho_init=False` PyTorch's default for every layer of both (Stable-Baselines3's `ortho_init=False`)."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space,
                 hidden: tuple[int, ...] = (64, 64), activation: str = "tanh", log_std_init: float = 0.0,
                 ortho_init: bool = True):
        super().__init__(action_space, log_std_init)
        self.activation = activation_class(activation)()
        self.tanh = activation == "tanh"  # torch.tanh directly: no nn.Module call on the hot path
        sizes = (obs_dim(observation_space), *hidden, self.n_out)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = i == len(sizes) - 2
            w_pi, w_v = torch.empty(n_out, n_in), torch.zeros(n_out, n_in)  # nn.Linear's (out, in) layout
            b = torch.zeros(2, 1, n_out)
            if ortho_init:
                nn.init.orthogonal_(w_pi, 0.01 if last else math.sqrt(2))
                nn.init.orthogonal_(w_v[:1] if last else w_v, 1.0 if last else math.sqrt(2))  # v is output 0
            else:  # nn.Linear's own initialisation, the value head a Linear(n_in, 1)
                pi, v = nn.Linear(n_in, n_out), nn.Linear(n_in, 1 if last else n_out)
                w_pi.copy_(pi.weight.detach())
                w_v[:v.out_features] = v.weight.detach()
                b[0, 0], b[1, 0, :v.out_features] = pi.bias.detach(), v.bias.detach()
            self.weights.append(nn.Parameter(torch.stack([w_pi.T, w_v.T])))
            self.biases.append(nn.Parameter(b))
        # plain (w, b) pairs: iterating a ParameterList costs more than the small layers themselves
        self.layers = list(zip(self.weights, self.biases))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(policy output, v(s)) for a batch of encoded observations."""
        x = obs.expand(2, *obs.shape)
        for w, b in self.layers[:-1]:
            x = torch.tanh(torch.baddbmm(b, x, w)) if self.tanh else self.activation(torch.baddbmm(b, x, w))
        x = torch.baddbmm(self.layers[-1][1], x, self.layers[-1][0])
        return x[0], x[1, :, 0]

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self(obs)[1]

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mode_of(self(obs)[0])

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """a ~ pi(.|s), ln pi(a|s) and v(s)."""
        out, v = self(obs)
        return (*self.sample_from(out), v)

    def log_prob_entropy_value(self, obs: torch.Tensor, action: torch.Tensor
                               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ln pi(a|s), H(pi(.|s)) and v(s)."""
        out, v = self(obs)
        return (*self.log_prob_entropy_of(out, action), v)


class ValueNet(nn.Module):
    """v(s, w): a state-value critic."""

    def __init__(self, observation_space: spaces.Space, hidden: tuple[int, ...] = (64, 64),
                 activation: str = "tanh"):
        super().__init__()
        self.net = mlp(obs_dim(observation_space), hidden, 1, activation, out_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


class QNet(nn.Module):
    """q(s, .; w): one output per action, with PyTorch's default layer initialisation (that of
    Stable-Baselines3's DQN, under which the rl-baselines3-zoo settings were tuned)."""

    def __init__(self, observation_space: spaces.Space, n_actions: int, hidden: tuple[int, ...], activation: str):
        super().__init__()
        self.net = torch_default_init(mlp(obs_dim(observation_space), hidden, n_actions, activation))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


class TwinCritic(nn.Module):
    """q_1(s, a; w_1) and q_2(s, a; w_2), the clipped double-Q pair of TD3 and SAC (Fujimoto et al. 2018, sec.
    4.1): two MLPs of the same shape with independent weights, each layer initialised like nn.Linear (PyTorch's
    default, that of Stable-Baselines3), evaluated as one batched network (torch.baddbmm over a leading axis
    of 2). `forward` returns both as a (2, batch) tensor."""

    def __init__(self, observation_space: spaces.Space, action_dim: int, hidden: tuple[int, ...], activation: str):
        super().__init__()
        self.activation = activation_class(activation)()
        sizes = (obs_dim(observation_space) + action_dim, *hidden, 1)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            pair = [nn.Linear(n_in, n_out) for _ in range(2)]
            self.weights.append(nn.Parameter(torch.stack([layer.weight.detach().T for layer in pair])))
            self.biases.append(nn.Parameter(torch.stack([layer.bias.detach()[None] for layer in pair])))
        self.layers = list(zip(self.weights, self.biases))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1)
        x = x.expand(2, *x.shape)
        for w, b in self.layers[:-1]:
            x = self.activation(torch.baddbmm(b, x, w))
        return torch.baddbmm(self.layers[-1][1], x, self.layers[-1][0]).squeeze(-1)
