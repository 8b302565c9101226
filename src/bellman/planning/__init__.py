"""Model-based planning on a TabularMDP: policy evaluation, value iteration, policy iteration."""

from bellman.planning.evaluation import action_values, evaluate_policy, greedy_policy
from bellman.planning.policy_iteration import policy_iteration, truncated_policy_iteration
from bellman.planning.result import PlanningResult
from bellman.planning.value_iteration import value_iteration

__all__ = [
    "PlanningResult",
    "action_values",
    "evaluate_policy",
    "greedy_policy",
    "policy_iteration",
    "truncated_policy_iteration",
    "value_iteration",
]
