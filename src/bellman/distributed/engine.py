"""RemoteEngine: an LLM engine (``bellman.llm.engine.Engine``) whose completions are made, and scored, on
rollout workers that each hold a copy of the policy (the generation / training split of RLHF systems on
Ray: OpenRLHF, Hu et al. 2024, arXiv:2405.11143; HybridFlow / verl, Sheng et al. 2024, arXiv:2409.19256).

    engine = RemoteEngine(model, tok, num_workers=2)     # GRPOConfig(num_workers=2) does this
    ro, scores = engine.generate_scored(prompts, sampling, seed, score, rows)
    engine.weights_changed()                             # after each optimiser step (the trainer's hook)

``generate_scored`` splits the prompts into one contiguous share per worker (at the boundaries between
repeated prompts, so a GRPO group stays on one worker); worker i runs ``generate_scored`` of its own engine
(``get_engine`` over its copy: the same code as in-process) with the seed ``seed`` for share 0 and
``core.seeding.worker_seed(seed, i)`` for share i, so one worker gives exactly the in-process rollout. The
learner joins the shares (``cat_rollouts``). ``logprobs`` run here, on the learner's model, which trains.

Weights: the trainable parameters go to the object store once after each change (``weights_changed``
marks it, the next request sends it), with a version number; a worker loads them when the version is new
to it. ``prefetch`` starts a request now, with the current weights, and the ``generate_scored`` call with
the same arguments later takes its result (GRPO's ``max_staleness`` 1). A lost worker makes its share again
(``WorkerPool``); ``restarts`` counts them. The workers start on the first request and stop at ``close``
(GRPO's ``train`` closes them when it returns; a later request starts them again).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bellman.core.seeding import worker_seed
from bellman.distributed.workers import WorkerPool, require_ray
from bellman.llm.engine import Engine, get_engine
from bellman.llm.config import SamplingConfig
from bellman.llm.rollout import Rollout, cat_rollouts


class EngineWorker:
    """On a worker: a copy of the policy and the engine over it."""

    def __init__(self, model: PreTrainedModel, tok: PreTrainedTokenizerBase, kind: str) -> None:
        self.model, self.version = model.eval(), None
        self.engine = get_engine(model, tok, kind)

    def ready(self) -> None:
        """Nothing: the first call builds the worker."""

    def generate_scored(self, weights: list, prompts: list[str], sampling: SamplingConfig, seed: int,
                        score: Any, extras: list | None) -> tuple[Rollout, Any]:
        version, ref = weights  # in a list, so Ray hands over the reference and only a new version is read
        if version != self.version:
            self.model.load_state_dict(require_ray().get(ref), strict=False)
            self.version = version
        return self.engine.generate_scored(prompts, sampling, seed, score, extras)


def shares(prompts: list[str], n: int) -> list[slice]:
    """``n`` contiguous slices of ``prompts``, as even as the boundaries between runs of a repeated prompt
    allow (slices may be empty when there are fewer runs than ``n``)."""
    cuts = [i for i in range(1, len(prompts)) if prompts[i] != prompts[i - 1]]
    bounds = [0]
    for k in range(1, n):
        target = k * len(prompts) / n
        later = [c for c in cuts if c > bounds[-1]]
        bounds.append(min(later, key=lambda c: abs(c - target)) if later else len(prompts))
    bounds.append(len(prompts))
    return [slice(a, max(a, b)) for a, b in zip(bounds, bounds[1:])]


class RemoteEngine(Engine):
    """Generation and scoring on ``num_workers`` Ray workers, log-probs on ``model`` (see the module docstring)."""

    def __init__(self, model: PreTrainedModel, tok: PreTrainedTokenizerBase, num_workers: int,
                 address: str | None = None, kind: str = "auto") -> None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"num_workers must be an int >= 1, got {num_workers!r}")
        self.model, self.tok, self.kind = model, tok, kind
        self.num_workers, self.address = num_workers, address
        self.local = get_engine(model, tok, kind)
        self.pool: WorkerPool | None = None
        self.version, self._sent, self._ref = 0, None, None
        self._prefetched: tuple[tuple, int, list] | None = None
        self._restarts_before = 0
        self.sampled_version: int | None = None  # the weights version the last rollout was sampled with

    def _workers(self) -> WorkerPool:
        if self.pool is None:
            pool = WorkerPool([(EngineWorker, (self.model, self.tok, self.kind))] * self.num_workers, self.address)
            try:
                pool.map("ready", [()] * self.num_workers)  # a worker that cannot start fails the run here
            except BaseException:
                pool.close()
                raise
            self.pool, self._sent = pool, None
        return self.pool

    @property
    def restarts(self) -> int:
        """Workers lost and restarted so far."""
        return self._restarts_before + (self.pool.restarts if self.pool is not None else 0)

    def weights_changed(self) -> None:
        """The model's weights changed: the next request sends them."""
        self.version += 1

    def _weights(self) -> list:
        if self._sent != self.version:
            self._ref = self._workers().put({k: p.detach() for k, p in self.model.named_parameters() if p.requires_grad})
            self._sent = self.version
        return [self.version, self._ref]

    def _submit(self, prompts: list[str], sampling: SamplingConfig, seed: int, score: Any, extras: list | None,
                ) -> list:
        pool, weights = self._workers(), self._weights()
        return [pool.submit(i, "generate_scored", weights, prompts[sl], sampling,
                            seed if i == 0 else worker_seed(seed, i), score, None if extras is None else extras[sl])
                for i, sl in enumerate(shares(prompts, len(pool))) if sl.stop > sl.start]

    @staticmethod
    def _key(prompts: list[str], sampling: SamplingConfig | None, seed: int | None, extras: list | None) -> tuple:
        return list(prompts), sampling, seed, extras

    def prefetch(self, prompts: list[str], sampling: SamplingConfig | None = None, seed: int | None = None,
                 score: Any = None, extras: list | None = None) -> None:
        """Start ``generate_scored(prompts, ...)`` now, with the current weights; the call with the same
        arguments takes its result. ``seed`` must be given (a drawn seed would not match)."""
        if seed is None:
            raise ValueError("prefetch needs a seed, to match the generate_scored call that takes its result")
        self._prefetched = (self._key(prompts, sampling, seed, extras), self.version,
                            self._submit(prompts, sampling or SamplingConfig(), seed, score, extras))

    def generate(self, prompts: list[str], sampling: SamplingConfig | None = None, seed: int | None = None,
                 ) -> Rollout:
        return self.generate_scored(prompts, sampling, seed)[0]

    def generate_scored(self, prompts: list[str], sampling: SamplingConfig | None = None, seed: int | None = None,
                        score: Any = None, extras: list | None = None) -> tuple[Rollout, Any]:
        if not prompts:
            raise ValueError("generate needs at least one prompt")
        if seed is None:  # drawn here, as a local engine draws it, so the learner's torch stream moves the same
            seed = int(torch.randint(2**31, ()))
        key, prefetched = self._key(prompts, sampling, seed, extras), self._prefetched
        self._prefetched = None
        if prefetched is not None and prefetched[0] == key:
            _, self.sampled_version, calls = prefetched
        else:
            self.sampled_version = self.version
            calls = self._submit(prompts, sampling or SamplingConfig(), seed, score, extras)
        results = [self.pool.result(c) for c in calls]
        ro = cat_rollouts([r[0] for r in results], self.tok.pad_token_id)
        return ro, None if score is None else torch.cat([r[1] for r in results])

    def logprobs(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                 completion_mask: torch.Tensor, temperature: float = 1.0, *, shared_prompt: bool = False,
                 grad: bool = True) -> torch.Tensor:
        return self.local.logprobs(prompt_ids, prompt_mask, completion_ids, completion_mask, temperature,
                                   shared_prompt=shared_prompt, grad=grad)

    def close(self) -> None:
        """Stop the workers (a later request starts them again)."""
        if self.pool is not None:
            self._restarts_before += self.pool.restarts
            self.pool.close()
            self.pool, self._prefetched = None, None
