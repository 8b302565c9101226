"""Temporal-difference learning: TD(0), Sarsa, Expected Sarsa, n-step Sarsa, Q-learning.

Zhao 2025, "Mathematical Foundations of Reinforcement Learning", chapter 7; Sutton & Barto, "Reinforcement
Learning: An Introduction" (2nd ed.), sections 6.1-6.6 and 7.2. Every method moves an estimate toward a
TD target with step alpha; they differ only in the target. A truncated episode (episode_length reached,
or the env's own truncation) bootstraps from the last state; a terminated one does not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bellman.mdp import check_policy
from bellman.core.config import check_int
from bellman.tabular.common import (
    TabularResult,
    check_alpha,
    check_initial,
    check_return,
    episodes_range,
    epsilon_greedy,
    epsilon_greedy_action,
    linear_epsilons,
    sampler,
    setup,
    start_state,
    values,
)

SARSA, EXPECTED_SARSA, Q_LEARNING = "sarsa", "expected_sarsa", "q_learning"


def td0(
    env: Any,
    policy: np.ndarray,
    alpha: float = 0.1,
    episodes: int = 500,
    episode_length: int = 100,
    gamma: float | None = None,
    v0: np.ndarray | None = None,
    random_start: bool = False,
    seed: int | None = None,
    progress: bool = False,
) -> TabularResult:
    """TD(0) estimate of v_pi (Zhao, section 7.1; Sutton & Barto, section 6.1):

        v(s_t) <- v(s_t) + alpha [r_{t+1} + gamma v(s_{t+1}) - v(s_t)].

    policy: the (S, A) distribution (or (S,) actions) being evaluated. The result has q = None.
    """
    alpha = check_alpha(alpha)
    env, episodes, gamma, rng = setup(env, episodes, episode_length, gamma, seed)
    S, A, L = env.n_states, env.n_actions, env.episode_length
    pi = check_policy(policy, S, A)
    sample, step = sampler(pi), env.step
    v = check_initial("v0", v0, (S,)).tolist()
    returns, lengths = np.zeros(episodes), np.zeros(episodes, dtype=np.int64)
    for i in episodes_range(episodes, progress, "TD(0)"):
        s = env.reset(start_state(rng, S, random_start))
        u = rng.random(L).tolist()
        g, t = 0.0, 0
        for t in range(L):
            s2, r, terminated, truncated, _ = step(sample(s, u[t]))
            td_target = r if terminated else r + gamma * v[s2]
            v[s] += alpha * (td_target - v[s])
            g += r
            if terminated or truncated:
                break
            s = s2
        returns[i], lengths[i] = g, t + 1
        check_return(g, i)
    return TabularResult(None, np.array(v), pi, returns, lengths)


def sarsa(
    env: Any,
    alpha: float = 0.1,
    epsilon: float = 0.1,
    episodes: int = 500,
    episode_length: int = 100,
    gamma: float | None = None,
    epsilon_end: float | None = None,
    q0: np.ndarray | None = None,
    random_start: bool = False,
    seed: int | None = None,
    progress: bool = False,
) -> TabularResult:
    """Sarsa (Zhao, section 7.2; Sutton & Barto, section 6.4), on-policy with eps-greedy behaviour:

        q(s,a) <- q(s,a) + alpha [r + gamma q(s',a') - q(s,a)],  a' ~ eps-greedy(q)(.|s').

    epsilon decays linearly to epsilon_end over the episodes when given; the result's policy is
    eps-greedy with the final epsilon.
    """
    return _td_control(SARSA, env, alpha=alpha, epsilon=epsilon, episodes=episodes, episode_length=episode_length,
                       gamma=gamma, epsilon_end=epsilon_end, q0=q0, behaviour=None, random_start=random_start,
                       seed=seed, progress=progress)


def expected_sarsa(
    env: Any,
    alpha: float = 0.1,
    epsilon: float = 0.1,
    episodes: int = 500,
    episode_length: int = 100,
    gamma: float | None = None,
    epsilon_end: float | None = None,
    q0: np.ndarray | None = None,
    random_start: bool = False,
    seed: int | None = None,
    progress: bool = False,
) -> TabularResult:
    """Expected Sarsa (Zhao, chapter 7; Sutton & Barto, section 6.6): the target averages over pi:

        q(s,a) <- q(s,a) + alpha [r + gamma sum_a' pi(a'|s') q(s',a') - q(s,a)],

    pi the eps-greedy policy of q, so sum_a' pi(a'|s') q(s',a') = (1 - eps) max q(s',.) + eps mean q(s',.).
    """
    return _td_control(EXPECTED_SARSA, env, alpha=alpha, epsilon=epsilon, episodes=episodes,
                       episode_length=episode_length, gamma=gamma, epsilon_end=epsilon_end, q0=q0, behaviour=None,
                       random_start=random_start, seed=seed, progress=progress)


def q_learning(
    env: Any,
    alpha: float = 0.1,
    epsilon: float = 0.1,
    episodes: int = 500,
    episode_length: int = 100,
    gamma: float | None = None,
    behaviour: np.ndarray | None = None,
    epsilon_end: float | None = None,
    q0: np.ndarray | None = None,
    random_start: bool = False,
    seed: int | None = None,
    progress: bool = False,
) -> TabularResult:
    """Q-learning (Watkins 1989; Zhao, section 7.4; Sutton & Barto, section 6.5):

        q(s,a) <- q(s,a) + alpha [r + gamma max_a' q(s',a') - q(s,a)].

    On-policy, actions are eps-greedy in q (epsilon, epsilon_end); off-policy, they are drawn from
    `behaviour`, an (S, A) distribution (epsilon is then unused). The result's policy is greedy in q.
    """
    return _td_control(Q_LEARNING, env, alpha=alpha, epsilon=epsilon, episodes=episodes,
                       episode_length=episode_length, gamma=gamma, epsilon_end=epsilon_end, q0=q0,
                       behaviour=behaviour, random_start=random_start, seed=seed, progress=progress)


def _td_control(
    target: str,
    env: Any,
    *,
    alpha: float,
    epsilon: float,
    episodes: int,
    episode_length: int,
    gamma: float | None,
    epsilon_end: float | None,
    q0: np.ndarray | None,
    behaviour: np.ndarray | None,
    random_start: bool,
    seed: int | None,
    progress: bool,
) -> TabularResult:
    """One-step TD control; `target` picks the TD target of Sarsa, Expected Sarsa or Q-learning."""
    alpha = check_alpha(alpha)
    env, episodes, gamma, rng = setup(env, episodes, episode_length, gamma, seed)
    epsilons = linear_epsilons(epsilon, epsilon_end, episodes)
    S, A, L = env.n_states, env.n_actions, env.episode_length
    sample = None if behaviour is None else sampler(check_policy(behaviour, S, A, "behaviour"))
    q = check_initial("q0", q0, (S, A)).tolist()
    step = env.step
    returns, lengths = np.zeros(episodes), np.zeros(episodes, dtype=np.int64)
    for i in episodes_range(episodes, progress, target.replace("_", " ").title()):
        eps = epsilons[i]

        def act(s: int, u: float, u_a: float) -> int:
            return epsilon_greedy_action(q[s], eps, u, u_a) if sample is None else sample(s, u)

        s = env.reset(start_state(rng, S, random_start))
        u = rng.random((L + 1, 2)).tolist()
        a = act(s, *u[0])
        g, t = 0.0, 0
        for t in range(L):
            s2, r, terminated, truncated, _ = step(a)
            q_next = q[s2]
            if target == SARSA:
                a2 = act(s2, *u[t + 1])
                future = q_next[a2]
            elif target == EXPECTED_SARSA:
                future = (1.0 - eps) * max(q_next) + eps * sum(q_next) / A
            else:
                future = max(q_next)
            td_target = r if terminated else r + gamma * future
            q[s][a] += alpha * (td_target - q[s][a])
            g += r
            if terminated or truncated:
                break
            if target != SARSA:
                a2 = act(s2, *u[t + 1])
            s, a = s2, a2
        returns[i], lengths[i] = g, t + 1
        check_return(g, i)
    q = np.array(q)
    pi = epsilon_greedy(q, 0.0 if target == Q_LEARNING else epsilons[-1])
    return TabularResult(q, values(q, pi), pi, returns, lengths)


def n_step_sarsa(
    env: Any,
    n: int = 3,
    alpha: float = 0.1,
    epsilon: float = 0.1,
    episodes: int = 500,
    episode_length: int = 100,
    gamma: float | None = None,
    epsilon_end: float | None = None,
    q0: np.ndarray | None = None,
    random_start: bool = False,
    seed: int | None = None,
    progress: bool = False,
) -> TabularResult:
    """n-step Sarsa (Zhao, section 7.3; Sutton & Barto, section 7.2), on-policy with eps-greedy behaviour:

        G = r_{tau+1} + gamma r_{tau+2} + ... + gamma^{h-tau-1} r_h + gamma^{h-tau} q(s_h, a_h),
        q(s_tau, a_tau) <- q(s_tau, a_tau) + alpha [G - q(s_tau, a_tau)],   h = min(tau + n, T),

    without the bootstrap term when s_h is terminal. n = 1 is Sarsa (same numbers for the same seed).
    """
    n, alpha = check_int("n", n), check_alpha(alpha)
    env, episodes, gamma, rng = setup(env, episodes, episode_length, gamma, seed)
    epsilons = linear_epsilons(epsilon, epsilon_end, episodes)
    S, A, L = env.n_states, env.n_actions, env.episode_length
    q = check_initial("q0", q0, (S, A)).tolist()
    step = env.step
    returns, lengths = np.zeros(episodes), np.zeros(episodes, dtype=np.int64)
    for i in episodes_range(episodes, progress, f"{n}-step Sarsa"):
        eps = epsilons[i]
        s = env.reset(start_state(rng, S, random_start))
        u = rng.random((L + 1, 2)).tolist()
        states, actions, rewards = [s], [epsilon_greedy_action(q[s], eps, *u[0])], [0.0]
        T, terminated, t = L, False, 0
        while True:
            if t < T:
                s2, r, terminated, truncated, _ = step(actions[t])
                states.append(s2)
                rewards.append(r)
                if terminated or truncated or t + 1 == L:
                    T = t + 1
                if not terminated:  # a_{t+1}, also needed to bootstrap a truncated episode
                    actions.append(epsilon_greedy_action(q[s2], eps, *u[t + 1]))
            tau = t - n + 1
            if tau >= 0:
                h = min(tau + n, T)
                g = 0.0
                for k in range(h, tau, -1):
                    g = rewards[k] + gamma * g
                if not (h == T and terminated):
                    g += gamma ** (h - tau) * q[states[h]][actions[h]]
                s_tau, a_tau = states[tau], actions[tau]
                q[s_tau][a_tau] += alpha * (g - q[s_tau][a_tau])
            if tau == T - 1:
                break
            t += 1
        returns[i], lengths[i] = sum(rewards), T
        check_return(returns[i], i)
    q = np.array(q)
    pi = epsilon_greedy(q, epsilons[-1])
    return TabularResult(q, values(q, pi), pi, returns, lengths)
