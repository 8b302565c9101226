"""The maths the deep RL and LLM trainers share: returns and advantages (`bellman.core.returns`) and the
PPO losses (`bellman.core.losses`). Neither imports an algorithm; importing them does not load torch."""
