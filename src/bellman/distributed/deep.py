"""Deep RL on rollout workers: each worker steps its share of the env copies with a copy of the policy, the
learner gathers their experience, updates, and broadcasts the new weights (the synchronous actor-learner
split of A2C / PPO at scale: Mnih et al. 2016, arXiv:1602.01783, section 4; Espeholt et al. 2018,
"IMPALA", arXiv:1802.01561, section 3, without its off-policy lag).

An agent with ``num_workers`` > 0 does this in ``learn`` by itself::

    agent = PPO("CartPole-v1", PPOConfig.for_env("CartPole-v1", num_workers=2), seed=0).learn(100_000)

Every iteration the learner puts the weights of the agent's ``rollout_modules`` in the object store once,
each worker loads them into its copy of the agent (``Agent(..., worker=i)``, built on the worker), runs the
algorithm's own ``sample()`` on its ``envs_per_worker`` copies and returns the experience, its step count
and its finished episodes; the learner joins the batches along the env axis (``join_experience``) and
runs ``update``. DQN's sample is its ``train_freq`` steps, so the workers feed the replay buffer and
refresh their weights every ``train_freq`` env steps.

Random streams: worker 0 is handed the learner's streams (python, torch, numpy) with the weights and hands
them back with its batch, so a run with one worker draws every number an in-process run draws and ends with
the same parameters; workers 1, 2, ... draw from their own (``core.seeding.worker_seed``). A run with a
fixed seed and worker count is the same every time.

Checkpoints hold the workers' env states and streams too (``Agent.save`` asks them), so a resumed run
continues as if never stopped. A worker lost mid-run samples its batch again on a fresh process with fresh
episodes (``WorkerPool``); ``agent.worker_restarts`` and the ``worker_restarts`` metric count them.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, NamedTuple

from bellman.core.seeding import rng_state, set_rng_state
from bellman.deep import env_state
from bellman.deep.rollout import join_experience
from bellman.distributed.workers import WorkerPool

if TYPE_CHECKING:
    from bellman.deep.agent import Agent, AgentConfig, EnvSource


class Batch(NamedTuple):
    """What a worker returns for one iteration."""

    experience: Any            # Agent.sample() on the worker's copies
    steps: int                 # env transitions in it
    episodes: list[tuple[float, int]]  # (return, length) of the episodes finished in it
    rng: dict[str, Any] | None  # worker 0: the learner's streams after sampling


class DeepWorker:
    """On a worker: a copy of the agent that samples with the learner's weights."""

    def __init__(self, agent_class: type[Agent], env: EnvSource, config: AgentConfig, seed: int, index: int):
        self.agent = agent_class(env, config, seed=seed, worker=index)

    def ready(self) -> None:
        """Nothing: the first call builds the worker."""

    def sample(self, weights: dict[str, dict], step: int, total_steps: int, rng: dict[str, Any] | None) -> Batch:
        a = self.agent
        for name, state in weights.items():
            getattr(a, name).load_state_dict(state)
        a.step, a.total_steps = step, total_steps  # schedules (eps, learning_starts) read the learner's count
        if rng is not None:
            set_rng_state(rng, a.rng)
        with a.runtime():
            experience = a.sample()
        episodes, a._new_episodes = a._new_episodes, []
        return Batch(experience, a.step - step, episodes, rng_state(a.rng) if rng is not None else None)

    def state(self) -> dict[str, Any]:
        """The worker's envs (plain data), episode bookkeeping and random streams, for a checkpoint."""
        a = self.agent
        return {"envs": env_state.capture(a.envs), "rng": rng_state(a.rng),
                "loop": {"obs": a.obs, "prev_done": a._prev_done, "ep_return": a._ep_return,
                         "ep_length": a._ep_length}}

    def load(self, state: dict[str, Any]) -> None:
        a, state = self.agent, copy.deepcopy(state)  # arrays read from the object store are read-only
        if state["envs"]["opaque"]:  # such envs were not captured: fresh episodes (as Agent._restore does)
            a.reset_envs()
        else:
            env_state.restore(a.envs, state["envs"])
            loop = state["loop"]
            a.obs, a._prev_done, a._ep_return, a._ep_length = (loop["obs"], loop["prev_done"], loop["ep_return"],
                                                                loop["ep_length"])
        set_rng_state(state["rng"], a.rng)


class RolloutWorkers:
    """The rollout workers of one agent while its ``learn`` runs (``Agent.rollout_workers``): started on
    entry (with the states a checkpoint or an earlier ``learn`` left), stopped on exit."""

    def __init__(self, agent: Agent) -> None:
        self.agent, self._restarts_before = agent, agent.worker_restarts
        c = agent.config
        self.pool = WorkerPool([(DeepWorker, (type(agent), agent.env_source, c, agent.seed, i))
                                for i in range(c.num_workers)], c.ray_address)

    def __enter__(self) -> RolloutWorkers:
        a = self.agent
        try:
            if a._worker_states:
                self.pool.map("load", [(s,) for s in a._worker_states])
            else:  # start every worker now, so one that cannot start fails the run before any step
                self.pool.map("ready", [()] * len(self.pool))
        except BaseException:
            self.pool.close()
            raise
        a._workers = self
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        a = self.agent
        try:
            if exc_type is None:
                a._worker_states = self.states()  # a later learn continues these episodes
        finally:
            a._workers = None
            self.pool.close()

    def sample(self) -> Any:
        """One iteration's experience from every worker, joined; the agent's step count, episodes and
        random streams advanced as if it had sampled itself."""
        a = self.agent
        weights = self.pool.put({name: getattr(a, name).state_dict() for name in a.rollout_modules})
        batches = self.pool.map("sample", [(weights, a.step, a.total_steps, rng_state(a.rng) if i == 0 else None)
                                           for i in range(len(self.pool))])
        set_rng_state(batches[0].rng, a.rng)
        for b in batches:
            a.step += b.steps
            for ret, length in b.episodes:
                a.recent_returns.append(ret)
                a._new_episodes.append((ret, length))
        a.worker_restarts = self._restarts_before + self.pool.restarts
        return join_experience([b.experience for b in batches])

    def states(self) -> list[dict[str, Any]]:
        """Every worker's ``DeepWorker.state``."""
        states = self.pool.map("state", [()] * len(self.pool))
        self.agent.worker_restarts = self._restarts_before + self.pool.restarts
        return states
