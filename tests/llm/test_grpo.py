"""GRPO: advantages, k3 KL, each loss aggregation on hand-computed numbers; trainer runs and checkpoints."""

import json
import math

import pytest
import torch

from bellman.llm.grpo import GRPOConfig, GRPOTrainer, group_advantages, grpo_loss, k3_kl, overlong_penalty
from bellman.llm.logprobs import completion_logprobs
from bellman.llm.model import TinyConfig, tiny_model
from bellman.llm.tasks import Task, arithmetic

torch.set_num_threads(1)
SMALL = TinyConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


def test_group_advantages_by_hand():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    std = math.sqrt(1 / 3)  # unbiased std of (1, 0, 0, 1)
    a = 0.5 / (std + 1e-4)
    torch.testing.assert_close(group_advantages(r, 4), torch.tensor([a, -a, -a, a, 0, 0, 0, 0]))
    torch.testing.assert_close(group_advantages(r, 4, scale=False), torch.tensor([.5, -.5, -.5, .5, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="does not divide"):
        group_advantages(torch.zeros(6), 4)


def test_k3_kl_nonnegative_and_zero_when_policies_agree():
    g = torch.Generator().manual_seed(0)
    logp, ref = -5 * torch.rand(1000, generator=g), -5 * torch.rand(1000, generator=g)
    assert (k3_kl(logp, ref) >= 0).all()
    assert torch.equal(k3_kl(logp, logp), torch.zeros(1000))
    d = torch.tensor(-0.5)  # ref - logp
    torch.testing.assert_close(k3_kl(torch.tensor(0.0), d), torch.exp(d) - d - 1)


# two completions: lengths 3 and 1, advantages +1 and -1, ratio 1 -> per-token loss -A
LOGP = torch.zeros(2, 3)
MASK = torch.tensor([[1, 1, 1], [1, 0, 0]])
ADV = torch.tensor([1.0, -1.0])


def test_loss_aggregations_by_hand():
    grpo, _ = grpo_loss(LOGP, LOGP, ADV, MASK, loss_type="grpo")
    dapo, _ = grpo_loss(LOGP, LOGP, ADV, MASK, loss_type="dapo")
    dr, _ = grpo_loss(LOGP, LOGP, ADV, MASK, loss_type="dr_grpo", max_new_tokens=4)
    assert grpo.item() == pytest.approx((-3 / 3 + 1 / 1) / 2)  # mean of per-sequence means = 0
    assert dapo.item() == pytest.approx((-3 + 1) / 4)            # token sum / 4 tokens
    assert dr.item() == pytest.approx((-3 + 1) / (2 * 4))        # token sum / (2 seqs x max 4 tokens)


def test_ratio_clipping_low_and_high():
    logp = torch.tensor([[0.5], [0.5], [-0.5]])
    old, mask = torch.zeros(3, 1), torch.ones(3, 1)
    adv = torch.tensor([1.0, -1.0, -1.0])
    loss, s = grpo_loss(logp, old, adv, mask, eps_low=0.2, eps_high=0.28, loss_type="dapo")
    r_hi, r_lo = math.exp(0.5), math.exp(-0.5)
    # A>0, ratio above 1+eps_high: clipped to 1.28; A<0, ratio high: unclipped r; A<0 ratio below 1-eps_low: 0.8
    expected = (-1.28 + r_hi + 0.8) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert s["clip_ratio"].item() == pytest.approx(2 / 3)


def test_kl_term_added_with_beta():
    logp, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]])
    mask, adv = torch.ones(1, 2), torch.tensor([0.0])
    loss, s = grpo_loss(logp, logp.clone(), adv, mask, ref_logp=ref, beta=0.1, loss_type="grpo")
    kl = [math.exp(-0.5) + 0.5 - 1, math.exp(1.0) - 1.0 - 1]
    assert loss.item() == pytest.approx(0.1 * sum(kl) / 2, rel=1e-6)
    assert s["kl"].item() == pytest.approx(sum(kl) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(logp, logp, adv, mask, beta=0.1)


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_micro_batches_add_up_to_the_full_batch_and_padding_carries_no_gradient(loss_type):
    g = torch.Generator().manual_seed(1)
    logp = (-torch.rand(4, 5, generator=g)).requires_grad_()
    old, adv = -torch.rand(4, 5, generator=g), torch.randn(4, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]])
    full, _ = grpo_loss(logp, old, adv, mask, loss_type=loss_type, max_new_tokens=5)
    n_tok = mask.sum().float()
    parts = sum(grpo_loss(logp[i:i + 2], old[i:i + 2], adv[i:i + 2], mask[i:i + 2], loss_type=loss_type,
                          max_new_tokens=5, n_sequences=4, n_tokens=n_tok)[0] for i in (0, 2))
    assert parts.item() == pytest.approx(full.item(), rel=1e-6)
    full.backward()
    assert torch.all(logp.grad[mask == 0] == 0) and logp.grad[mask == 1].abs().sum() > 0


def test_overlong_penalty():
    got = overlong_penalty(torch.tensor([5, 6, 8, 10, 12]), max_new_tokens=10, buffer=4)
    torch.testing.assert_close(got, torch.tensor([0.0, 0.0, -0.5, -1.0, -1.0]))
    assert torch.equal(overlong_penalty(torch.tensor([10]), 10, 0), torch.zeros(1))


def test_config_errors():
    for bad in (dict(num_generations=1), dict(loss_type="ppo"), dict(beta=-1.0), dict(overlong_buffer=64),
                dict(temperature=0.0), dict(total_steps=0)):
        with pytest.raises(ValueError):
            GRPOConfig(**bad)


def _sevens(prompts, completions, **_):
    """Toy reward: the share of '7' characters among the first four."""
    return [c[:4].count("7") / 4 for c in completions]


def _task():
    t = arithmetic(digits=(1, 2), n_train=40, n_test=4, seed=0)
    return Task("sevens", t.train, t.test, accuracy=_sevens)


def _cfg(tmp=None, **kw):
    base = dict(learning_rate=5e-3, num_generations=8, prompts_per_step=4, max_new_tokens=4, beta=0.0,
                total_steps=30, eval_rows=4, eval_max_new_tokens=4, progress=False, out=tmp, checkpoint_every=2)
    return GRPOConfig(**(base | kw))


def test_seeded_grpo_run_raises_reward():
    model, tok = tiny_model(SMALL, seed=0)
    tr = GRPOTrainer(model, tok, _task(), _cfg(loss_type="dapo", eps_high=0.28, dynamic_sampling=True))
    tr.train()
    first = sum(h["reward"] for h in tr.history[:5]) / 5
    last = sum(h["reward"] for h in tr.history[-5:]) / 5
    assert first < 0.1 and last > 0.5


def test_grpo_with_reference_model_and_kl():
    model, tok = tiny_model(SMALL, seed=0)
    tr = GRPOTrainer(model, tok, _task(), _cfg(total_steps=3, beta=0.04, num_iterations=2, micro_batch_size=8))
    tr.train()
    assert tr.ref is not None and all(h["kl"] >= 0 for h in tr.history)
    assert tr.history[-1]["kl"] > 0  # the policy moved away from the reference


def test_log_probs_run_each_group_prompt_once_with_the_numbers_of_the_plain_forward():
    model, tok = tiny_model(SMALL, seed=0)
    tr = GRPOTrainer(model, tok, _task(), _cfg(num_generations=4, prompts_per_step=3, beta=0.04))
    ro, _, _ = tr.sample(0, 3)
    whole, split = slice(0, 8), slice(2, 10)  # two whole groups; one that cuts groups
    batch, shared = tr.logprob_batch(ro, whole)
    assert shared and batch[0].shape[0] == 2
    assert not tr.logprob_batch(ro, split)[1]
    for sl in (whole, split):
        batch, shared = tr.logprob_batch(ro, sl)
        plain = completion_logprobs(model, ro.prompt_ids[sl], ro.prompt_mask[sl], ro.completion_ids[sl],
                                    ro.completion_mask[sl])
        torch.testing.assert_close(tr.engine.logprobs(*batch, shared_prompt=shared), plain, atol=1e-5, rtol=0)
        torch.testing.assert_close(tr._ref_logprobs(ro, sl), plain, atol=1e-5, rtol=0)  # ref: the start policy
        torch.testing.assert_close(ro.logprobs[sl], plain, atol=1e-5, rtol=0)


def test_on_policy_pi_old_is_the_training_pass_so_sampler_rounding_never_enters_the_loss():
    """The ratio's pi_old is the training pass's own log-probs of the batch (TRL #3867 and verl #2953 are a
    sampler / trainer mismatch in it): the sampler's log-probs shifted by 0.5 nat give the same update, with
    no clipped token, over two iterations per batch; the logged gap is the shift."""
    runs = []
    for shift in (0.0, 0.5):
        model, tok = tiny_model(SMALL, seed=0)
        tr = GRPOTrainer(model, tok, _task(), _cfg(total_steps=1, num_iterations=2, beta=0.04))
        generate = tr.engine.generate_scored

        def shifted(*a, _generate=generate, _shift=shift, **k):
            ro, scores = _generate(*a, **k)
            ro.logprobs = ro.logprobs + _shift * ro.completion_mask
            return ro, scores

        tr.engine.generate_scored = shifted
        m = tr.train_step(0)
        runs.append((m, [p.detach().clone() for p in model.parameters()]))
    (m0, w0), (m1, w1) = runs
    assert m0["sampler_logprob_gap"] < 1e-5 and abs(m1["sampler_logprob_gap"] - 0.5) < 1e-5
    assert m1["clip_ratio"] == m0["clip_ratio"] and m1["loss"] == m0["loss"]
    assert all(torch.equal(a, b) for a, b in zip(w0, w1))


def test_fused_adamw_gives_the_numbers_of_the_foreach_loop():
    model, tok = tiny_model(SMALL, seed=0)
    tr = GRPOTrainer(model, tok, _task(), _cfg(weight_decay=0.1))
    params = [p for p in model.parameters() if p.requires_grad]
    copies = [p.detach().clone().requires_grad_() for p in params]
    foreach = torch.optim.AdamW(copies, lr=tr.config.learning_rate, weight_decay=0.1, foreach=True)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        for p, q in zip(params, copies):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        tr.optimizer.step()
        foreach.step()
    assert tr.optimizer.defaults["fused"]
    for p, q in zip(params, copies):
        torch.testing.assert_close(p.detach(), q.detach(), atol=1e-6, rtol=0)


def test_checkpoint_round_trip_continues_identically(tmp_path):
    m1, tok = tiny_model(SMALL, seed=0)
    GRPOTrainer(m1, tok, _task(), _cfg(tmp_path / "a", total_steps=4)).train()
    m2, _ = tiny_model(SMALL, seed=0)
    GRPOTrainer(m2, tok, _task(), _cfg(tmp_path / "b", total_steps=4)).train(steps=2)  # "interrupted" at step 2
    m3, _ = tiny_model(SMALL, seed=0)
    with pytest.raises(FileExistsError, match="already holds a run; pass resume=True"):
        GRPOTrainer(tiny_model(SMALL, seed=0)[0], tok, _task(), _cfg(tmp_path / "b", total_steps=4)).train()
    resumed = GRPOTrainer(m3, tok, _task(), _cfg(tmp_path / "b", total_steps=4))
    result = resumed.train(resume=True)
    assert resumed.step == 4 and result["steps"] == 4
    for p1, p3 in zip(m1.parameters(), m3.parameters()):
        assert torch.equal(p1, p3)
    out = tmp_path / "b"
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("step,") and [ln.split(",")[0] for ln in lines[1:]] == ["1", "2", "3", "4"]
    ev = json.loads((out / "eval.json").read_text())
    assert {"accuracy_before", "accuracy_after"} <= set(ev)
    m4, _ = tiny_model(SMALL, seed=0)  # the same directory with other settings: an error, not a mixed run
    other = _cfg(out, total_steps=6)
    other.learning_rate *= 2
    with pytest.raises(ValueError, match="learning_rate: .* there, .* here"):
        GRPOTrainer(m4, tok, _task(), other).train(resume=True)
    assert (out / "model" / "config.json").exists() and list((out / "tb").iterdir())


def test_trainer_input_errors():
    model, tok = tiny_model(SMALL, seed=0)
    with pytest.raises(TypeError, match="GRPOConfig"):
        GRPOTrainer(model, tok, _task(), object())
    with pytest.raises(ValueError, match="reward_weights"):
        GRPOTrainer(model, tok, _task(), _cfg(reward_weights=(1.0, 2.0)))
    bad = GRPOTrainer(model, tok, _task(), _cfg(total_steps=1), rewards=[lambda p, c, **k: [0.0]])
    with pytest.raises(ValueError, match="one float per completion"):
        bad.train()


def test_speculative_grpo_learns_logs_acceptance_and_resumes_identically(tmp_path):
    """speculative=True: the samples come from the draft heads' exact speculative sampling; the run still
    learns, logs the acceptance per head and the heads' refresh loss, and its checkpoint holds the heads and
    the draft vocabulary they chose at the first refresh."""
    model, tok = tiny_model(SMALL, seed=0)
    tr = GRPOTrainer(model, tok, _task(), _cfg(loss_type="dapo", eps_high=0.28, dynamic_sampling=True,
                                               speculative=True))
    tr.train()
    first = sum(h["reward"] for h in tr.history[:5]) / 5
    last = sum(h["reward"] for h in tr.history[-5:]) / 5
    assert first < 0.1 and last > 0.5
    assert all(0 <= h["acceptance_1"] <= 1 and h["draft_loss"] > 0 for h in tr.history)
    m1, _ = tiny_model(SMALL, seed=0)
    a = GRPOTrainer(m1, tok, _task(), _cfg(tmp_path / "a", total_steps=4, speculative=True, draft_vocab=40))
    a.train()
    assert a.drafter.heads.vocab.numel() == 40 < tok.vocab_size
    m2, _ = tiny_model(SMALL, seed=0)
    GRPOTrainer(m2, tok, _task(), _cfg(tmp_path / "b", total_steps=4, speculative=True, draft_vocab=40)).train(steps=2)
    m3, _ = tiny_model(SMALL, seed=0)
    b = GRPOTrainer(m3, tok, _task(), _cfg(tmp_path / "b", total_steps=4, speculative=True, draft_vocab=40))
    b.train(resume=True)
    assert torch.equal(a.drafter.heads.vocab, b.drafter.heads.vocab)
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m3.parameters()))
    assert all(torch.equal(p, q) for p, q in zip(a.drafter.heads.parameters(), b.drafter.heads.parameters()))
    with pytest.raises(ValueError, match="speculative"):
        _cfg(speculative=True, num_workers=1)
