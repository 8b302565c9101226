"""What every trainer shares, deep RL and LLM alike.

- ``config``: typed config dataclasses with validation, named presets and ``--set`` parsing;
- ``checkpoint``: atomic, checksummed checkpoints holding tensors and plain data only;
- ``run``: an output directory owned by one run (an exclusive lock, the resume rule, the run's identity);
- ``metrics``: rows of scalars to ``metrics.csv`` and TensorBoard, truncated on resume;
- ``progress``: the progress bar;
- ``seeding``: global seeding, derived seeds and RNG state capture, scoped torch thread counts.

Nothing here imports torch at module import time except ``checkpoint`` and ``seeding``'s torch parts,
which import it inside the functions that need it.
"""
