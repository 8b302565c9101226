"""Model-free tabular RL: Monte Carlo (mc.py) and temporal-difference (td.py) methods on discrete envs.

Each method takes a Gymnasium env with discrete spaces, its hyper-parameters and a seed, and returns a
`TabularResult` with .q, .v, .policy and the per-episode .returns and .lengths.
"""

from bellman.tabular.common import TabularResult, epsilon_greedy
from bellman.tabular.mc import mc_basic, mc_epsilon_greedy, mc_exploring_starts
from bellman.tabular.td import expected_sarsa, n_step_sarsa, q_learning, sarsa, td0

__all__ = [
    "TabularResult",
    "epsilon_greedy",
    "expected_sarsa",
    "mc_basic",
    "mc_epsilon_greedy",
    "mc_exploring_starts",
    "n_step_sarsa",
    "q_learning",
    "sarsa",
    "td0",
]
