"""What every trainer shares, deep RL and LLM alike.

- ``config``: typed config dataclasses with validation, named presets and ``--set`` parsing;
- ``checkpoint``: atomic, checksummed checkpoints holding tensors and plain data only;
- ``run``: an output directory owned by one run (an exclusive lock, the resume rule, the run's identity);
- ``metrics``: rows of scalars to ``metrics.csv`` and TensorBoard, truncated on resume;
- ``progress``: the progress bar;
- ``seeding``: global seeding, derived seeds and RNG state capture, scoped torch thread counts;
- ``returns`` and ``losses``: the maths both halves share (returns, GAE, standardisation, the PPO losses).

None of them imports torch at module import time (those that use it import it inside their functions),
and none imports an algorithm.
"""
