"""Monte Carlo control: MC Basic, MC Exploring Starts, MC eps-greedy.

Zhao 2025, "Mathematical Foundations of Reinforcement Learning", chapter 5 (Algorithms 5.1-5.3);
Sutton & Barto, "Reinforcement Learning: An Introduction" (2nd ed.), chapter 5.
q(s,a) is the average of the discounted returns observed after (s,a); the policy is improved greedily
(or eps-greedily) with respect to it. Episodes have `episode_length` steps unless the env terminates.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bellman.core.returns import discounted_returns
from bellman.mdp import check_policy
from bellman.planning import greedy_policy
from bellman.core.config import check_int
from bellman.tabular.common import (
    TabularResult,
    check_return,
    episodes_range,
    epsilon_greedy,
    epsilon_greedy_action,
    generate_episode,
    greedy_action,
    linear_epsilons,
    sampler,
    setup,
    start_state,
    values,
)


def mc_basic(
    env: Any,
    iterations: int = 20,
    episodes: int = 1,
    episode_length: int = 100,
    gamma: float | None = None,
    policy0: np.ndarray | None = None,
    seed: int | None = None,
    progress: bool = False,
) -> TabularResult:
    """MC Basic (Zhao, Algorithm 5.1): policy iteration with q_pi_k(s,a) estimated from returns.

    Each iteration runs `episodes` episodes from every pair (s,a) following pi_k (which needs an env
    whose reset accepts options={"state": s}), sets q(s,a) to the mean of their discounted returns and
    improves pi_{k+1} = greedy(q) (ties to the lowest action). Stops early when the policy is stable.
    policy0 (an (S, A) distribution or (S,) actions) defaults to the greedy policy of q = 0 (action 0).
    """
    iterations = check_int("iterations", iterations)
    env, episodes, gamma, rng = setup(env, episodes, episode_length, gamma, seed)
    S, A = env.n_states, env.n_actions
    q = np.zeros((S, A))
    pi = greedy_policy(q) if policy0 is None else check_policy(policy0, S, A, "policy0")
    returns, lengths = [], []
    for _ in episodes_range(iterations, progress, "MC Basic"):
        # policy evaluation: q(s,a) = mean return of episodes starting with (s,a) then following pi_k
        sample = sampler(pi)

        def follow_pi(state: int, u: float, u_a: float) -> int:
            return sample(state, u)

        for s in range(S):
            for a in range(A):
                g = 0.0
                for _ in range(episodes):
                    _, _, rewards = generate_episode(env, follow_pi, rng, state=s, action=a)
                    g += discounted_returns(rewards, gamma)[0]
                    returns.append(sum(rewards))
                    lengths.append(len(rewards))
                    check_return(returns[-1], len(returns) - 1)
                q[s, a] = g / episodes
        # policy improvement
        pi_next = greedy_policy(q)
        stable = np.array_equal(pi_next, pi)
        pi = pi_next
        if stable:
            break
    return TabularResult(q, values(q, pi), pi, np.array(returns), np.array(lengths, dtype=np.int64))


def mc_exploring_starts(
    env: Any,
    episodes: int = 5000,
    episode_length: int = 100,
    gamma: float | None = None,
    first_visit: bool = True,
    seed: int | None = None,
    progress: bool = False,
) -> TabularResult:
    """MC Exploring Starts (Zhao, Algorithm 5.2; Sutton & Barto, section 5.3).

    Every episode starts from a uniformly drawn pair (s, a) (the env's reset must accept
    options={"state": s}) and then follows the greedy policy of q; afterwards each visited (s,a) gets
    the return that followed its first visit (or every visit) averaged into q, which improves the
    policy of the visited states.
    """
    return _mc_control(env, episodes=episodes, episode_length=episode_length, gamma=gamma, epsilon=0.0,
                       epsilon_end=None, exploring_starts=True, first_visit=first_visit, random_start=False,
                       seed=seed, progress=progress, description="MC Exploring Starts")


def mc_epsilon_greedy(
    env: Any,
    episodes: int = 5000,
    episode_length: int = 100,
    epsilon: float = 0.1,
    epsilon_end: float | None = None,
    gamma: float | None = None,
    first_visit: bool = False,
    random_start: bool = False,
    seed: int | None = None,
    progress: bool = False,
) -> TabularResult:
    """MC eps-greedy (Zhao, Algorithm 5.3; Sutton & Barto, section 5.4): on-policy MC control with soft policies.

    Episodes start at the env's start (or a uniformly drawn state with random_start) and follow the
    eps-greedy policy of q, pi(a|s) = 1 - eps (|A|-1)/|A| for the greedy action and eps/|A| otherwise;
    returns are averaged over every visit (Zhao) or the first visit. epsilon decays linearly to
    epsilon_end over the episodes when epsilon_end is given. The result's policy is eps-greedy with
    the final epsilon.
    """
    return _mc_control(env, episodes=episodes, episode_length=episode_length, gamma=gamma, epsilon=epsilon,
                       epsilon_end=epsilon_end, exploring_starts=False, first_visit=first_visit,
                       random_start=random_start, seed=seed, progress=progress, description="MC eps-greedy")


def _mc_control(
    env: Any,
    *,
    episodes: int,
    episode_length: int,
    gamma: float | None,
    epsilon: float,
    epsilon_end: float | None,
    exploring_starts: bool,
    first_visit: bool,
    random_start: bool,
    seed: int | None,
    progress: bool,
    description: str,
) -> TabularResult:
    env, episodes, gamma, rng = setup(env, episodes, episode_length, gamma, seed)
    epsilons = linear_epsilons(epsilon, epsilon_end, episodes)
    S, A = env.n_states, env.n_actions
    q = np.zeros((S, A))
    g_sum, visits = np.zeros(S * A), np.zeros(S * A)
    returns, lengths = np.zeros(episodes), np.zeros(episodes, dtype=np.int64)
    for i in episodes_range(episodes, progress, description):
        q_list, eps = q.tolist(), epsilons[i]
        if exploring_starts:
            s0, a0 = int(rng.integers(S)), int(rng.integers(A))
            states, actions, rewards = generate_episode(
                env, lambda s, u, u_a: greedy_action(q_list[s]), rng, state=s0, action=a0
            )
        else:
            s0 = start_state(rng, S, random_start)
            states, actions, rewards = generate_episode(
                env, lambda s, u, u_a: epsilon_greedy_action(q_list[s], eps, u, u_a), rng, state=s0
            )
        # policy evaluation: average the returns that followed the (first) visits of each (s,a)
        g = discounted_returns(rewards, gamma)
        sa = np.asarray(states) * A + np.asarray(actions)
        if first_visit:
            sa, first = np.unique(sa, return_index=True)
            g = g[first]
        g_sum += np.bincount(sa, weights=g, minlength=S * A)
        visits += np.bincount(sa, minlength=S * A)
        # policy improvement is implicit: the next episode acts (eps-)greedily on the new q
        q = (g_sum / np.maximum(visits, 1)).reshape(S, A)
        returns[i], lengths[i] = sum(rewards), len(rewards)
        check_return(returns[i], i)
    pi = epsilon_greedy(q, epsilons[-1])
    return TabularResult(q, values(q, pi), pi, returns, lengths)
