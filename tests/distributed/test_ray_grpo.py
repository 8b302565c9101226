"""GRPO on Ray rollout workers (real Ray): one worker equals the in-process run, a prefetched batch is
sampled by the weights of its time (max_staleness 1), a worker lost while scoring is restarted and its
share made again."""

import os
import signal
import sys
from dataclasses import fields

import pytest
import torch

ray = pytest.importorskip("ray")

from bellman.distributed.engine import RemoteEngine, shares  # noqa: E402
from bellman.llm.engine import get_engine  # noqa: E402
from bellman.llm.grpo import GRPOConfig, GRPOTrainer  # noqa: E402
from bellman.llm.model import TinyConfig, tiny_model  # noqa: E402
from bellman.llm.rollout import SamplingConfig  # noqa: E402
from bellman.llm.tasks import Task, arithmetic  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers get this file's rewards by value

SMALL = TinyConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


def sevens(prompts, completions, **_):
    """Toy reward: the share of '7' characters among the first four."""
    return [c[:4].count("7") / 4 for c in completions]


class DieOnce:
    """`sevens`, but the first worker to score with it creates `marker` and kills its own process."""

    __name__ = "sevens"

    def __init__(self, marker):
        self.marker = marker

    def __call__(self, prompts, completions, **_):
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return sevens(prompts, completions)
        os.kill(os.getpid(), signal.SIGKILL)


def task(reward=sevens):
    """Trained on `reward` (scored on the workers), evaluated with `sevens` (on the learner)."""
    t = arithmetic(digits=(1, 2), n_train=40, n_test=4, seed=0)
    return Task("sevens", t.train, t.test, accuracy=sevens, rewards=[reward])


def config(**kw):
    base = dict(learning_rate=5e-3, num_generations=8, prompts_per_step=4, max_new_tokens=4, beta=0.0,
                total_steps=3, eval_rows=4, eval_max_new_tokens=4, progress=False)
    return GRPOConfig(**(base | kw))


def params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_one_worker_gives_the_in_process_run():
    runs = []
    for workers in (0, 1):
        model, tok = tiny_model(SMALL, seed=0)
        trainer = GRPOTrainer(model, tok, task(), config(num_workers=workers, beta=0.04))
        runs.append((trainer.train(), trainer.history, params(model)))
    (result0, history0, p0), (result1, history1, p1) = runs
    assert not torch.equal(p0, params(tiny_model(SMALL, seed=0)[0]))  # the policy moved
    assert torch.equal(p0, p1) and result0 == result1
    assert [h["reward"] for h in history0] == [h["reward"] for h in history1]
    assert [(h["staleness"], h["worker_restarts"]) for h in history1] == [(0, 0)] * 3


def test_a_prefetched_batch_is_sampled_by_the_weights_of_its_time():
    model, tok = tiny_model(SMALL, seed=0)
    local, remote = get_engine(model, tok), RemoteEngine(model, tok, num_workers=1)
    prompts, s = ["1+2=", "1+2=", "3+4=", "3+4="], SamplingConfig(temperature=1.0, max_new_tokens=4)
    try:
        before = local.generate(prompts, s, seed=3)
        remote.prefetch(prompts, s, seed=3)
        with torch.no_grad():  # an update happens while the batch is sampled
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        remote.weights_changed()
        stale = remote.generate(prompts, s, seed=3)
        assert (remote.version, remote.sampled_version) == (1, 0)
        fresh = remote.generate(prompts, s, seed=3)
        assert remote.sampled_version == 1
    finally:
        remote.close()
    after = local.generate(prompts, s, seed=3)
    for f in fields(before):
        assert torch.equal(getattr(stale, f.name), getattr(before, f.name))  # the behaviour policy's numbers
        assert torch.equal(getattr(fresh, f.name), getattr(after, f.name))
    assert not torch.equal(before.logprobs, after.logprobs)


def test_shares_keep_groups_together():
    prompts = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    assert shares(prompts, 2) == [slice(0, 4), slice(4, 12)]
    assert shares(prompts, 3) == [slice(0, 4), slice(4, 8), slice(8, 12)]
    assert shares(["a"] * 4, 2) == [slice(0, 4), slice(4, 4)]  # one group: one worker


def test_a_worker_lost_while_scoring_is_restarted_and_its_share_made_again(tmp_path):
    """Two workers, staleness 1: each batch after the first is sampled while the one before trains."""
    marker = str(tmp_path / "died")
    model, tok = tiny_model(SMALL, seed=0)
    trainer = GRPOTrainer(model, tok, task(DieOnce(marker)), config(num_workers=2, max_staleness=1))
    result = trainer.train()
    assert os.path.exists(marker) and result["steps"] == 3 and len(trainer.history) == 3
    assert [h["worker_restarts"] for h in trainer.history] == [1, 1, 1]  # lost in step 0's batch
    assert [h["staleness"] for h in trainer.history] == [0, 1, 1]  # from step 1 on, the weights before the update
    assert trainer.engine.pool is None  # stopped when train returned


def test_config_checks():
    with pytest.raises(ValueError, match="max_staleness = 1 is invalid; .* set num_workers >= 1"):
        config(max_staleness=1)
    with pytest.raises(ValueError, match=r"max_staleness = 2 is invalid; allowed: 0 \(on-policy\) or 1"):
        config(num_workers=2, max_staleness=2)
    with pytest.raises(ValueError, match="num_workers = -1 is invalid"):
        config(num_workers=-1)
