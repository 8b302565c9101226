"""Beyond one machine: rollout workers on Ray for deep RL and GRPO. Needs the `[distributed]` extra (Ray).

- ``bellman.distributed.workers``: ``connect`` (where Ray runs) and ``WorkerPool`` (Ray actors, restarted
  when lost);
- ``bellman.distributed.deep``: an agent with ``num_workers`` > 0 samples on workers in ``learn``
  (``RolloutWorkers``);
- ``bellman.distributed.engine``: ``RemoteEngine``, an LLM engine whose completions and rewards are made
  on workers (GRPO with ``num_workers`` > 0).

Importing this package loads neither Ray nor torch; import from the modules.
"""
