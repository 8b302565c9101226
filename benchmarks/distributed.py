"""Rollout workers on Ray (bellman.distributed): what they buy and what they cost on one machine, and the
per-step costs a scaling model needs.

1. Sampling throughput on an env whose step costs 1 ms of CPU (CartPole plus a spin on the thread's CPU
   clock): PPO's sample of 8 env copies x 64 steps, in-process and on 1 and 2 workers (4 copies each).
2. The Ray path's overhead on CartPole PPO (rl-baselines3-zoo settings: 8 copies x 32 steps, 20 epochs):
   seconds per iteration, sampling and update apart, in-process and on 1 and 2 workers.
3. GRPO on the built-in tiny model: seconds per step in-process and with 2 rollout workers (max_staleness
   0 and 1).
4. Per-call costs for the scaling model: an empty round trip, the weight broadcast (ray.put + a worker's
   read), a batch coming back, and the update time per sample.
5. The scaling model, from the numbers of this run (``scaling_model``): synchronous throughput at 1 to 512
   workers, and the worker count at which the learner becomes the bottleneck.

Usage: python benchmarks/distributed.py [--quick]   (prints a JSON line per measurement; `uptime` first)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

import numpy as np
import ray
import torch
from gymnasium.envs.classic_control import CartPoleEnv

from bellman.deep import PPO, PPOConfig
from bellman.distributed.workers import WorkerPool

SPIN_S = 1e-3


class SlowCartPole(CartPoleEnv):
    """CartPole whose step also burns 1 ms of this thread's CPU time (not wall time: a loaded machine
    stretches the wall time, the work stays the same)."""

    def step(self, action):
        end = time.thread_time() + SPIN_S
        while time.thread_time() < end:
            pass
        return super().step(action)


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip().split("load average:")[-1].strip()


ROWS: list[dict] = []


def report(**row) -> None:
    row = {**row, "load": load()}
    ROWS.append(row)
    print(json.dumps(row), flush=True)


def timed_iterations(agent: PPO, iters: int) -> dict[str, float]:
    """Seconds per sample() and per update(), and env steps per second of sampling, over `iters`
    iterations after one warm-up (workers started before the clock runs)."""
    with agent.runtime(), agent.rollout_workers():
        agent.total_steps = 10**12
        sample = agent.sample if agent._workers is None else agent._workers.sample
        agent.update(sample())
        t_sample = t_update = 0.0
        steps = agent.step
        for _ in range(iters):
            t0 = time.perf_counter()
            experience = sample()
            t1 = time.perf_counter()
            agent.update(experience)
            t2 = time.perf_counter()
            t_sample, t_update = t_sample + t1 - t0, t_update + t2 - t1
        steps = agent.step - steps
    return {"sample_s": t_sample / iters, "update_s": t_update / iters, "steps_per_s_sampling": steps / t_sample,
            "steps_per_iter": steps / iters}


def sampling_throughput(iters: int) -> None:
    base = dict(n_envs=8, n_steps=64, batch_size=512, n_epochs=1, hidden=(64, 64))
    for workers in (0, 1, 2):
        agent = PPO(SlowCartPole, PPOConfig(**base, num_workers=workers), seed=0)
        report(bench="sampling, 1 ms env", workers=workers, **timed_iterations(agent, iters))


def ppo_overhead(iters: int) -> None:
    for workers in (0, 1, 2):
        agent = PPO("CartPole-v1", PPOConfig.for_env("CartPole-v1", num_workers=workers), seed=0)
        report(bench="CartPole PPO (zoo)", workers=workers, **timed_iterations(agent, iters))


def grpo(steps: int) -> None:
    from bellman.llm.grpo import GRPOConfig, GRPOTrainer
    from bellman.llm.model import tiny_model
    from bellman.llm.tasks import arithmetic

    class Timed(GRPOTrainer):
        def train_step(self, step):
            t = time.perf_counter()
            m = super().train_step(step)
            self.times.append(time.perf_counter() - t)
            return m

    for workers, staleness in ((0, 0), (2, 0), (2, 1)):
        model, tok = tiny_model(seed=0)
        trainer = Timed(model, tok, arithmetic(digits=(1, 2), n_train=200, n_test=8, seed=0),
                        GRPOConfig(learning_rate=1e-3, num_generations=8, prompts_per_step=8, max_new_tokens=32,
                                   beta=0.0, total_steps=steps, eval_rows=8, progress=False, num_workers=workers,
                                   max_staleness=staleness))
        trainer.times = []
        trainer.train()
        per_step = float(np.mean(trainer.times[1:]))  # the first includes the workers' first weights
        report(bench="GRPO tiny model, 64 completions of up to 32 tokens", workers=workers,
               max_staleness=staleness, s_per_step=per_step)


class Probe:
    """A worker object for the per-call costs."""

    def __init__(self, n_params: int):
        self.net = torch.nn.Linear(n_params, 1, bias=False)

    def nothing(self) -> None:
        return None

    def read(self, weights: dict) -> None:
        self.net.load_state_dict(weights)

    def batch(self, rows: int, width: int) -> np.ndarray:
        return np.zeros((rows, width), dtype=np.float32)

    def spin(self, seconds: float) -> None:
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass


def parallelism() -> None:
    """How many cores this machine gives two workers now: 2 x 0.5 s of CPU spun at once, over the wall time."""
    pool = WorkerPool([(Probe, (1,))] * 2)
    pool.map("spin", [(0.01,), (0.01,)])
    walls = []
    for _ in range(3):
        t = time.perf_counter()
        pool.map("spin", [(0.5,), (0.5,)])
        walls.append(time.perf_counter() - t)
    pool.close()
    report(bench="two workers spinning 0.5 s of CPU each", wall_s=walls, cores_available=round(1.0 / min(walls), 2))


def call_costs(repeats: int) -> None:
    agent = PPO(SlowCartPole, PPOConfig(n_envs=8, n_steps=64, batch_size=512, n_epochs=1, hidden=(64, 64)))
    n_params = sum(p.numel() for p in agent.ac.parameters())
    pool = WorkerPool([(Probe, (n_params,))] * 2)
    pool.map("nothing", [(), ()])

    def per_call(fn) -> float:
        fn()
        t = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - t) / repeats

    empty = per_call(lambda: pool.map("nothing", [(), ()]))
    weights = {"weight": torch.zeros(1, n_params)}
    bcast = per_call(lambda: pool.map("read", [(ref, ) for ref in [pool.put(weights)] * 2]))
    put = per_call(lambda: pool.put(weights))
    rows, width = 256, agent.observation_space.shape[0] + 6  # obs, action, log-prob, value, reward, flags
    gather = per_call(lambda: pool.map("batch", [(rows, width)] * 2))
    pool.close()
    report(bench="per-call costs, 2 workers", policy_params=n_params, empty_round_trip_s=empty,
           broadcast_round_trip_s=bcast, put_s=put, weight_bytes=4 * n_params,
           batch_round_trip_s=gather, batch_bytes_per_worker=4 * rows * width)
    from bellman.llm.model import tiny_model
    n_lm = sum(p.numel() for p in tiny_model(seed=0)[0].parameters())  # the tiny LM's size
    pool = WorkerPool([(Probe, (n_lm,))] * 2)
    pool.map("nothing", [(), ()])
    big = {"weight": torch.zeros(1, n_lm)}
    bcast_big = per_call(lambda: pool.map("read", [(ref, ) for ref in [pool.put(big)] * 2]))
    pool.close()
    report(bench="per-call costs, 2 workers", policy_params=n_lm, weight_bytes=4 * n_lm,
           broadcast_round_trip_s=bcast_big, empty_round_trip_s=empty)


def scaling_model(per_worker_steps: int = 256) -> None:
    """Synchronous iterations of N workers, each sampling B = `per_worker_steps` env steps of the 1 ms env:

        T(N) = t_put + B c_s + N (t_call + t_recv + B u),    throughput X(N) = N B / T(N),

    c_s: a worker's time per env step (1-worker sampling run), t_put: the weights into the object store,
    t_call: the learner's cost of one call (an empty round trip over 2 workers, halved), t_recv: one batch
    back (batch round trip minus empty), u: the update's time per sample. The learner's share
    N (t_call + t_recv + B u) + t_put exceeds the workers' B c_s beyond N* = (B c_s - t_put) / (t_call +
    t_recv + B u); past N*, no overlap of sampling and learning gets above X_max = B / (t_call + t_recv + B u)."""
    by = {(r["bench"], r.get("workers")): r for r in ROWS}
    one = by[("sampling, 1 ms env", 1)]
    costs = next(r for r in ROWS if r["bench"] == "per-call costs, 2 workers" and "put_s" in r)
    c_s = one["sample_s"] / one["steps_per_iter"]
    t_call = costs["empty_round_trip_s"] / 2
    t_recv = max(costs["batch_round_trip_s"] - costs["empty_round_trip_s"], 0.0) / 2
    t_put = costs["put_s"]
    for name, update in (("PPO zoo update (20 epochs)", by[("CartPole PPO (zoo)", 0)]),
                         ("PPO 1-epoch update", by[("sampling, 1 ms env", 0)])):
        u = update["update_s"] / update["steps_per_iter"]
        b = per_worker_steps
        per_worker = t_call + t_recv + b * u
        throughput = {n: round(n * b / (t_put + b * c_s + n * per_worker)) for n in (1, 2, 8, 64, 512)}
        report(bench="scaling model", update=name, c_s=c_s, t_call=t_call, t_recv=t_recv, t_put=t_put, u=u,
               steps_per_s=throughput, learner_bound_from_workers=round((b * c_s - t_put) / per_worker, 1),
               max_steps_per_s=round(b / per_worker))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    parser.add_argument("--only", choices=["sampling", "ppo", "grpo", "costs"], default=None)
    args = parser.parse_args()
    k = 3 if args.quick else 1
    torch.set_num_threads(1)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    report(bench="start", cpus=os.cpu_count())
    if args.only in (None, "sampling"):
        parallelism()
        sampling_throughput(iters=12 // k)
    if args.only in (None, "costs"):
        call_costs(repeats=60 // k)
    if args.only in (None, "ppo"):
        ppo_overhead(iters=60 // k)
    if args.only in (None, "grpo"):
        grpo(steps=12 // k)
    if args.only is None:
        scaling_model()
    ray.shutdown()


if __name__ == "__main__":
    main()
