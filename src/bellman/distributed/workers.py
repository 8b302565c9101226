"""Rollout workers as Ray actors (Moritz et al. 2018, "Ray: A Distributed Framework for Emerging AI
Applications", arXiv:1712.05889): where Ray runs, a pool of workers, and what happens when one is lost.

``connect(address)`` joins or starts Ray. ``WorkerPool(recipes)`` starts one actor per recipe, spread over
the cluster's nodes; ``pool.map(method, args)`` calls ``method`` on every worker's object and returns the
results in worker order; ``pool.put(x)`` stores ``x`` once in Ray's object store, to be read by every worker
(a weight broadcast).

A worker's object is built from its recipe on its first call, not in the actor's constructor, so an error
while building it (an unknown env id on that machine, a module it cannot import) comes back as the error it
is, with a note naming the worker, and fails the run. A worker whose process dies (killed, out of memory,
its node lost) is restarted by Ray (``max_restarts``), or, if it was killed for good (``ray.kill``), replaced
by the pool; the call it was running is made again on the new process, which builds its object afresh, so
the lost batch is sampled again. ``pool.restarts`` counts the new processes; a call that fails
``max_restarts + 1`` times in a row fails the run.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

MAX_RESTARTS = 3


def require_ray() -> Any:
    """The ``ray`` module, or an ImportError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError("rollout workers need Ray: pip install 'bellman[distributed]'") from None
    return ray


def connect(address: str | None = None) -> None:
    """Use this process's Ray if ``ray.init`` already ran; else join the cluster at ``address`` ("auto": the
    one this machine belongs to, "ray://host:port": through Ray Client) or, when it is None, at
    ``RAY_ADDRESS`` if that is set; else start a local Ray with this machine's CPUs. A Ray started here stays
    up for the rest of the process (``ray.shutdown()`` stops it)."""
    ray = require_ray()
    if ray.is_initialized():
        return
    target = address or os.environ.get("RAY_ADDRESS") or "local"
    if target == "local":
        ray.init(address="local", include_dashboard=False)
    else:
        ray.init(address=target)


class _Host:
    """The actor: holds one worker object, built on first use from its recipe (``(build, args)`` cloudpickled
    into the object store). Every call carries ``[reference to the recipe]`` (in a list, so Ray hands the
    reference over unread), so the constructor takes nothing and a restarted actor builds itself again."""

    def __init__(self) -> None:
        self.obj = None
        self.incarnation = uuid.uuid4().hex  # new in every process this actor runs in

    def call(self, recipe: list, method: str, *args: Any) -> tuple[str, Any]:
        if self.obj is None:
            import ray
            from ray import cloudpickle
            build, build_args = cloudpickle.loads(ray.get(recipe[0]))
            self.obj = build(*build_args)
        return self.incarnation, getattr(self.obj, method)(*args)

    def node_id(self) -> str:
        import ray
        return ray.get_runtime_context().get_node_id()


@dataclass
class _Call:
    worker: int
    method: str
    args: tuple
    ref: Any


class WorkerPool:
    """Ray actors, one per recipe (see the module docstring). ``recipes[i]`` is ``(build, args)``: worker i's
    object is ``build(*args)``, built on the worker. Each actor reserves ``num_cpus`` CPUs."""

    def __init__(self, recipes: list[tuple[Any, tuple]], address: str | None = None, num_cpus: float = 1,
                 max_restarts: int = MAX_RESTARTS, what: str = "rollout worker") -> None:
        ray = require_ray()
        connect(address)
        from ray import cloudpickle

        have = ray.cluster_resources().get("CPU", 0)
        if len(recipes) * num_cpus > have:
            raise ValueError(f"{len(recipes)} {what}s need {len(recipes) * num_cpus:g} CPUs and the Ray cluster has "
                             f"{have:g}; use fewer workers or add machines (ray start --address=...)")
        self.what, self.max_restarts = what, max_restarts
        self._remote = ray.remote(_Host).options(num_cpus=num_cpus, max_restarts=max_restarts, max_task_retries=0,
                                                 scheduling_strategy="SPREAD")
        blobs = [cloudpickle.dumps(r) for r in recipes]
        stored = {b: ray.put(b) for b in set(blobs)}  # workers with the same recipe read one copy
        self._recipes = [[stored[b]] for b in blobs]  # held here for as long as the workers may restart
        self.actors = [self._remote.remote() for _ in self._recipes]
        self._incarnation: list[str | None] = [None] * len(recipes)
        self.restarts = 0

    def __len__(self) -> int:
        return len(self.actors)

    def put(self, value: Any) -> Any:
        """``value`` in the object store once; pass the reference to every worker (each reads the same copy)."""
        return require_ray().put(value)

    def submit(self, worker: int, method: str, *args: Any) -> _Call:
        """Start ``method(*args)`` on worker ``worker``'s object; ``result`` waits for it."""
        return _Call(worker, method, args, self.actors[worker].call.remote(self._recipes[worker], method, *args))

    def result(self, call: _Call) -> Any:
        """The result of a ``submit``: made again on the restarted worker if the worker was lost."""
        ray = require_ray()
        from ray.exceptions import ActorDiedError, RayActorError, RayTaskError

        i, failures = call.worker, 0
        while True:
            try:
                incarnation, value = ray.get(call.ref)
            except RayTaskError as e:  # the worker's own code raised: that error, naming the worker
                cause = e.cause if isinstance(e.cause, BaseException) else e
                cause.add_note(f"raised on {self.what} {i} ({call.method}):\n{e}")
                raise cause from None
            except RayActorError as e:  # the worker's process was lost, or could not start at all
                if getattr(e, "_actor_init_failed", False):  # e.g. bellman is not installed on its machine
                    raise RuntimeError(f"{self.what} {i} could not start: {e}") from None
                failures += 1
                if failures > self.max_restarts:
                    raise RuntimeError(f"{self.what} {i} was lost {failures} times in a row during {call.method}; "
                                       f"last: {e}") from e
                if isinstance(e, ActorDiedError):
                    self.actors[i] = self._remote.remote()  # killed for good: a new one
                call = self.submit(i, call.method, *call.args)
                continue
            if self._incarnation[i] is not None and incarnation != self._incarnation[i]:
                self.restarts += 1
            self._incarnation[i] = incarnation
            return value

    def map(self, method: str, args: list[tuple]) -> list[Any]:
        """``method(*args[i])`` on every worker i at once; the results in worker order."""
        if len(args) != len(self.actors):
            raise ValueError(f"{len(args)} argument tuples for {len(self.actors)} workers")
        calls = [self.submit(i, method, *a) for i, a in enumerate(args)]
        return [self.result(c) for c in calls]

    def node_ids(self) -> list[str]:
        """The Ray node each worker runs on."""
        ray = require_ray()
        return ray.get([a.node_id.remote() for a in self.actors])

    def close(self) -> None:
        """Stop every worker (their resources go back to the cluster)."""
        ray = require_ray()
        for a in self.actors:
            ray.kill(a)
        self.actors = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
