"""The one-step TD target on hand-made numbers (Polyak averaging is tested with DQN)."""

import torch

from bellman.deep.targets import td_target


def test_td_target_does_not_bootstrap_from_terminal_states():
    reward, terminated = torch.tensor([1.0, -1.0, 0.5]), torch.tensor([0.0, 1.0, 0.0])
    next_value = torch.tensor([2.0, 100.0, -4.0])
    # 1 + 0.9 * 2 = 2.8;  -1 (terminal: no bootstrap);  0.5 + 0.9 * -4 = -3.1
    torch.testing.assert_close(td_target(reward, terminated, next_value, 0.9), torch.tensor([2.8, -1.0, -3.1]))
