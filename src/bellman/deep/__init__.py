"""Deep RL on Gymnasium tasks: one file per algorithm plus a small shared core (agent, nets, buffers,
returns, logger, checkpoint). Needs the `[deep]` extra (torch)."""

from bellman.deep.agent import Agent, AgentConfig, NonFiniteError, make_vec_env
from bellman.deep.buffers import ReplayBuffer, RolloutBuffer
from bellman.deep.ppo import PPO, PPOConfig
from bellman.deep.reinforce import REINFORCE, REINFORCEConfig
from bellman.deep.a2c import A2C, A2CConfig
from bellman.deep.trpo import TRPO, TRPOConfig
