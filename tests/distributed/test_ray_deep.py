"""Deep RL on Ray rollout workers (real Ray): one worker equals the in-process run, a seeded run with two
workers is the same twice and resumes exactly, workers lost mid-run are restarted and their batches
sampled again, a worker that cannot start fails the run with its own error, workers spread over the
nodes of a two-node cluster."""

import csv
import os
import signal
import sys
import textwrap
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.classic_control import CartPoleEnv

ray = pytest.importorskip("ray")

from bellman.deep import A2C, DQN, PPO, A2CConfig, DQNConfig, PPOConfig  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers get this file's envs by value

PPO_TINY = dict(n_envs=4, n_steps=8, batch_size=16, n_epochs=2, hidden=(16,))
DQN_TINY = dict(n_envs=2, learning_starts=16, train_freq=8, gradient_steps=2, target_update_interval=24,
                buffer_size=500, batch_size=8, hidden=(16,))


def params(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


@pytest.mark.parametrize("algo, config, net, steps", [
    (PPO, PPOConfig(**PPO_TINY), "ac", 96),
    (A2C, A2CConfig(n_envs=4, hidden=(16,)), "pi", 60),
    (DQN, DQNConfig(**DQN_TINY), "q", 64),
])
def test_one_worker_gives_the_in_process_run(algo, config, net, steps):
    local = algo("CartPole-v1", config, seed=3).learn(steps, progress=False)
    remote = algo("CartPole-v1", config.replace(num_workers=1), seed=3).learn(steps, progress=False)
    assert remote.step == local.step and list(remote.recent_returns) == list(local.recent_returns)
    for name in algo.rollout_modules + (("q_target",) if algo is DQN else ()):
        assert torch.equal(params(getattr(remote, name)), params(getattr(local, name)))
    assert torch.equal(params(getattr(remote, net)), params(getattr(local, net)))
    assert remote.worker_restarts == 0 and remote.logger_rows[-1]["worker_restarts"] == 0


def test_two_workers_give_the_same_run_twice_and_a_resumed_run_continues_it(tmp_path):
    """The stopped run's first iterations and the resumed rest are another run of the same seed: it ends
    with the uninterrupted run's parameters only if both runs drew the same numbers."""
    config = PPOConfig(**PPO_TINY, num_workers=2)
    straight = PPO("CartPole-v1", config, seed=5).learn(192, out=tmp_path / "straight", checkpoint_every=64,
                                                         progress=False)
    single = PPO("CartPole-v1", PPOConfig(**PPO_TINY), seed=5).learn(192, progress=False)
    assert not torch.equal(params(single.ac), params(straight.ac))  # worker 1 draws from its own streams

    PPO("CartPole-v1", config, seed=5).learn(96, out=tmp_path / "stopped", checkpoint_every=64, progress=False)
    resumed = PPO.load(tmp_path / "stopped" / "checkpoint.pt")
    assert 96 <= resumed.step < straight.step and len(resumed._worker_states) == 2
    resumed.learn(192, out=tmp_path / "stopped", checkpoint_every=64, progress=False, resume=True)
    assert resumed.step == straight.step
    assert torch.equal(params(resumed.ac), params(straight.ac))  # the workers' envs and streams came back too


class DyingCartPole(CartPoleEnv):
    """CartPole that kills its worker twice, at an env copy's 20th step: first its process (SIGKILL: Ray
    restarts it), then, on a later worker process, the actor for good (`ray.kill`: the pool replaces it).
    A marker file per death makes each happen once across all workers."""

    def __init__(self, folder):
        super().__init__()
        self.folder, self.steps = folder, 0

    def step(self, action):
        self.steps += 1
        if self.steps == 20:
            for how in ("sigkill", "ray.kill"):
                try:
                    os.close(os.open(os.path.join(self.folder, how), os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    continue
                if how == "sigkill":
                    os.kill(os.getpid(), signal.SIGKILL)
                ray.kill(ray.get_runtime_context().current_actor)
                time.sleep(60)  # the kill arrives before this returns
        return super().step(action)


def test_lost_workers_are_restarted_and_their_batches_sampled_again(tmp_path):
    folder = str(tmp_path)
    agent = PPO(lambda: DyingCartPole(folder), PPOConfig(**PPO_TINY, num_workers=2), seed=0)
    agent.learn(192, out=tmp_path / "run", log_every=32, progress=False)
    assert os.path.exists(tmp_path / "sigkill") and os.path.exists(tmp_path / "ray.kill")  # both deaths happened
    assert agent.step >= 192  # the run completed, the lost batches sampled again
    assert agent.worker_restarts == 2
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert int(rows[-1]["step"]) == agent.step and rows[-1]["worker_restarts"] == "2"


def test_a_worker_that_cannot_start_fails_the_run_with_its_error(tmp_path):
    gym.register("OnlyOnTheLearner-v0", entry_point=CartPoleEnv)  # registered in this process only
    try:
        agent = PPO("OnlyOnTheLearner-v0", PPOConfig(**PPO_TINY, num_workers=1))
        with pytest.raises(ValueError, match="unknown env id 'OnlyOnTheLearner-v0'") as caught:
            agent.learn(64, progress=False)
        assert any("rollout worker" in note for note in caught.value.__notes__)
    finally:
        gym.registry.pop("OnlyOnTheLearner-v0")

    (tmp_path / "learner_only_envs.py").write_text(textwrap.dedent("""
        from gymnasium.envs.classic_control import CartPoleEnv
        def make():
            return CartPoleEnv()
    """))
    sys.path.insert(0, str(tmp_path))  # importable here, not on the workers
    try:
        import learner_only_envs
        agent = PPO(learner_only_envs.make, PPOConfig(**PPO_TINY, num_workers=1))
        with pytest.raises(ModuleNotFoundError, match="learner_only_envs"):
            agent.learn(64, progress=False)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("learner_only_envs", None)


def test_more_workers_than_the_cluster_has_cpus_is_an_error_not_a_hang():
    with pytest.raises(ValueError, match="3 rollout workers need 3 CPUs and the Ray cluster has 2"):
        PPO("CartPole-v1", PPOConfig(**{**PPO_TINY, "n_envs": 3}, num_workers=3)).learn(32, progress=False)


def test_config_checks():
    with pytest.raises(ValueError, match="n_envs = 4 is invalid; allowed: a multiple of num_workers = 3"):
        PPOConfig(**PPO_TINY, num_workers=3)
    with pytest.raises(ValueError, match="n_envs = 4 is invalid; allowed: num_workers x envs_per_worker = 6"):
        PPOConfig(**PPO_TINY, num_workers=2, envs_per_worker=3)
    assert PPOConfig(**PPO_TINY, num_workers=2, envs_per_worker=2).n_envs == 4
    with pytest.raises(ValueError, match="num_workers = -1 is invalid"):
        PPOConfig(num_workers=-1)
    from bellman.deep import REINFORCE, REINFORCEConfig
    with pytest.raises(ValueError, match="REINFORCE samples in this process only"):
        REINFORCE("CartPole-v1", REINFORCEConfig(n_envs=2, num_workers=1))


def test_workers_spread_over_the_nodes_of_a_cluster(ray_cluster):
    agent = DQN("CartPole-v1", DQNConfig(**DQN_TINY, num_workers=2), seed=1)
    with agent.rollout_workers() as workers:
        nodes = workers.pool.node_ids()
        agent.total_steps = 64
        while agent.step < 64:
            agent.train_iteration()
    assert sorted(nodes) == sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])  # one worker on each node
    assert agent.step >= 64 and len(agent.buffer) == agent.step  # every transition of both reached the buffer
    assert np.isfinite(params(agent.q).sum().item())
