"""Draft heads and the speculative engine on a small model: greedy speculative decoding is greedy decoding
token for token, sampled tokens have the policy's distribution, the log-probs are the policy's forward pass,
distillation trains the heads with the trunk frozen, and saved heads load back."""

import pytest
import torch
from scipy.stats import chi2

from bellman.llm.config import DraftConfig
from bellman.llm.draft import (DraftTrainer, distill_loss, draft_heads, load_heads, save_heads, teacher, trunk,
                                vocab_by_mass)
from bellman.llm.engine import LeanEngine
from bellman.llm.engine.speculative import SpeculativeEngine
from bellman.llm.model import TinyConfig, load_model, tiny_model
from bellman.llm.rollout import SamplingConfig
from bellman.llm.speculative import probs
from bellman.llm.tasks import arithmetic

torch.set_num_threads(1)
SMALL = TinyConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
PROMPTS = ["1+2=", "100+200=", "hello world", "7"]


def peaked(seed: int = 0):
    """The small model with its (tied) embeddings scaled up: next-token entropies of 1-4 nats, as a trained
    model's, instead of the near-uniform ones of a fresh initialisation."""
    model, tok = tiny_model(SMALL, seed=seed)
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(8)
    return model.eval(), tok


def noisy_heads(model, kind: str, k: int, seed: int = 0, scale: float = 0.3):
    """Heads with random weights: drafts that the policy often rejects."""
    heads = draft_heads(model, kind, k)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in heads.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return heads


@pytest.mark.parametrize("kind, scale", [("medusa", 0.1), ("mtp", 0.02)])
def test_greedy_speculative_decoding_is_greedy_decoding(kind, scale):
    model, tok = load_model("tiny", seed=0)
    model.eval()
    s = SamplingConfig(temperature=0, max_new_tokens=24)
    plain = LeanEngine(model, tok).generate(PROMPTS, s)
    for k in (1, 3):
        engine = SpeculativeEngine(model, tok, noisy_heads(model, kind, 3, scale=scale), k=k)
        ro = engine.generate(PROMPTS, s)
        assert torch.equal(ro.completion_ids, plain.completion_ids)
        assert torch.equal(ro.completion_mask, plain.completion_mask)
        torch.testing.assert_close(ro.logprobs, plain.logprobs, atol=1e-5, rtol=0)
        assert 0 < engine.acceptance()[0] < 1  # drafts were both accepted and rejected


@pytest.mark.parametrize("s", [SamplingConfig(temperature=1.0, max_new_tokens=12),
                               SamplingConfig(temperature=0.8, top_p=0.9, top_k=20, max_new_tokens=12)],
                         ids=["t1", "top_p_top_k"])
def test_speculative_logprobs_are_the_policys_forward_pass(s):
    model, tok = peaked()
    for kind in ("medusa", "mtp"):
        engine = SpeculativeEngine(model, tok, noisy_heads(model, kind, 2), k=2)
        ro = engine.generate(PROMPTS * 4, s, seed=3)
        batch = (ro.prompt_ids, ro.prompt_mask, ro.completion_ids, ro.completion_mask)
        torch.testing.assert_close(ro.logprobs, engine.logprobs(*batch, temperature=s.temperature, grad=False),
                                   atol=1e-5, rtol=0)
        assert 0 < engine.acceptance()[0] < 1  # drafts both accepted and rejected


def exact_marginals(model, tok, prompt: str, s: SamplingConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain sampling's exact distributions of completion tokens 2 and 3, over V + 1 cells (the last: past
    EOS), by enumerating every first (and second) token."""
    v, eos = model.config.vocab_size, tok.eos_token_id
    ids = torch.tensor(tok([prompt], add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        p1 = probs(model(ids).logits[0, -1], s)
        one = torch.cat([ids.expand(v, -1), torch.arange(v)[:, None]], 1)
        p2 = probs(model(one).logits[:, -1], s)  # (x1, x2)
        two = torch.cat([one.repeat_interleave(v, 0), torch.arange(v).repeat(v)[:, None]], 1)
        p3 = torch.cat([probs(model(c).logits[:, -1], s) for c in two.split(2048)]).view(v, v, v)
    stop1 = torch.arange(v) == eos
    joint2 = p1[:, None] * p2
    m2 = torch.cat([joint2[~stop1].sum(0), p1[stop1]])
    joint3 = joint2[..., None] * p3
    live = ~stop1[:, None] & ~stop1[None, :]
    m3 = torch.cat([joint3[live].sum(0), joint2[~live].sum()[None]])
    return m2, m3


def chi_square_p(counts: torch.Tensor, p: torch.Tensor) -> float:
    """Pearson's chi-square p-value of counts against cell probabilities, the cells expecting fewer than 5
    draws pooled into one; 0 if a draw fell where p has no mass."""
    n = counts.sum()
    if counts[p == 0].sum() > 0:
        return 0.0
    small = (p * n < 5) & (p > 0)
    e = torch.cat([p[p * n >= 5], p[small].sum()[None]]).double() * n
    o = torch.cat([counts[p * n >= 5], counts[small].sum()[None]]).double()
    keep = e > 0
    stat = float(((o[keep] - e[keep]) ** 2 / e[keep]).sum())
    return float(chi2.sf(stat, int(keep.sum()) - 1))


def part_vocab(model, keep: int = 2, seed: int = 0) -> torch.Tensor:
    """A draft vocabulary of (keep - 1) / keep of the token ids of a random order (keep = 2: every other one),
    without some of the policy's likely tokens."""
    order = torch.randperm(model.config.vocab_size, generator=torch.Generator().manual_seed(seed))
    return order[torch.arange(len(order)) % keep != 0]


@pytest.mark.parametrize("s, vocab", [(SamplingConfig(temperature=1.0, max_new_tokens=3), False),
                                      (SamplingConfig(temperature=1.0, top_p=0.8, max_new_tokens=3), False),
                                      (SamplingConfig(temperature=1.0, top_p=0.8, max_new_tokens=3), True)],
                         ids=["t1", "top_p", "top_p_draft_vocab"])
def test_speculative_samples_have_the_policys_distribution(s, vocab):
    """Tokens 2 and 3 (the first two drafted, verified positions) of 30,000 speculative samples against plain
    sampling's exact distribution; a 1% shift of it is rejected. With a draft vocabulary of three quarters of the tokens
    (q = 0 on the other quarter) the samples are still the policy's."""
    model, tok = peaked()
    n, v = 30_000, model.config.vocab_size
    m2, m3 = exact_marginals(model, tok, "1+2=", s)
    heads = noisy_heads(model, "mtp", 2)
    if vocab:
        heads.set_vocab(part_vocab(model, keep=4))
    engine = SpeculativeEngine(model, tok, heads, k=2)
    ro = engine.generate(["1+2="] * n, s, seed=8)
    assert 0.1 < engine.acceptance()[0] < 0.9  # the rule both accepts and rejects often
    if vocab:  # every draft came from the draft vocabulary
        assert torch.isin(ro.completion_ids[:, 1][ro.completion_mask[:, 1] == 1], heads.vocab).float().mean() < 1
    for j, exact in ((1, m2), (2, m3)):
        cells = torch.where(ro.completion_mask[:, j] == 1, ro.completion_ids[:, j], v)
        counts = torch.bincount(cells, minlength=v + 1)
        assert chi_square_p(counts, exact) > 1e-3
        assert 0.5 * float((counts / n - exact).abs().sum()) < 0.03
    shifted = 0.98 * m2 + 0.02 * torch.nn.functional.one_hot(m2.argmin(), v + 1)  # 1% of the mass moved
    assert chi_square_p(torch.bincount(torch.where(ro.completion_mask[:, 1] == 1, ro.completion_ids[:, 1], v),
                                       minlength=v + 1), shifted) < 1e-3


def test_distillation_trains_the_heads_with_the_trunk_frozen(tmp_path):
    model, tok = peaked()
    trunk = {k: w.clone() for k, w in model.state_dict().items()}
    prompts = [r["prompt"] for r in arithmetic(n_train=64, n_test=8, seed=0).train]
    heads = draft_heads(model, "mtp", 2)
    held_out = LeanEngine(model, tok).generate(prompts[:32], SamplingConfig(max_new_tokens=16), seed=99)
    ids = torch.cat([held_out.prompt_ids, held_out.completion_ids], 1)
    mask = torch.cat([held_out.prompt_mask, held_out.completion_mask], 1)
    start = held_out.prompt_ids.shape[1] - 1  # the completions: what the heads learn to draft
    before, agree_before = distill_loss(model, heads, ids, mask, start)
    DraftTrainer(model, tok, heads, DraftConfig(total_steps=150, learning_rate=3e-3, max_new_tokens=16)).train(prompts)
    after, agree_after = distill_loss(model, heads, ids, mask, start)
    assert float(after) < 0.8 * float(before)
    assert all(b + 0.2 < a for a, b in zip(agree_after, agree_before))
    assert all(torch.equal(w, trunk[k]) for k, w in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    # saved beside the model and loaded back: the same drafts
    save_heads(heads, tmp_path / "draft")
    loaded = load_heads(tmp_path / "draft", model)
    h, y = torch.randn(3, SMALL.hidden_size), torch.tensor([5, 6, 7])
    with torch.no_grad():
        a = heads.draft(model, h, y, 2, SamplingConfig(temperature=0))
        b = loaded.draft(model, h, y, 2, SamplingConfig(temperature=0))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_bad_settings_are_errors():
    model, tok = peaked()
    with pytest.raises(ValueError, match="kind must be one of"):
        draft_heads(model, "eagle", 2)
    with pytest.raises(ValueError, match="k must be 'auto' or an int"):
        SpeculativeEngine(model, tok, draft_heads(model, "mtp", 2), k=3)
    with pytest.raises(ValueError, match="DraftConfig.heads"):
        DraftConfig(heads=0)


def test_cli_draft_writes_heads_that_load_beside_the_model(tmp_path):
    import json

    from typer.testing import CliRunner

    from bellman.cli import app
    runner = CliRunner(env={"BELLMAN_DEBUG": "1"})
    out = tmp_path / "draft"
    r = runner.invoke(app, ["llm", "draft", "--kind", "medusa", "--heads", "2", "--steps", "3", "--batch-size", "4",
                            "--max-new-tokens", "8", "--eval-rows", "4", "--out", str(out)])
    assert r.exit_code == 0, r.output
    result = json.loads((out / "draft.json").read_text())
    assert result["config"]["kind"] == "medusa" and len(result["acceptance_t1"]) == 2
    assert all(0 <= a <= 1 for a in result["acceptance_t0"])
    model, _ = load_model("tiny", seed=0)
    heads = load_heads(out, model)
    assert heads.kind == "medusa" and heads.heads == 2
    r = runner.invoke(app, ["llm", "draft", "--kind", "eagle", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0


def test_auto_draft_length_maximises_tokens_per_second_and_falls_back_to_plain_decoding():
    model, tok = peaked()
    engine = SpeculativeEngine(model, tok, draft_heads(model, "mtp", 2))
    assert engine.draft_length(4) == 2  # nothing measured yet: draft all K to measure
    engine._costs = {(4, 1): 1.0, (4, 2): 1.5, (4, 3): 2.0}  # seconds of a step of 1, 2, 3 positions
    engine.steps, engine.drafted = 10, torch.tensor([10.0, 10.0])
    engine.passed = torch.tensor([9.0, 8.0])  # tokens per step 1, 1.9, 2.7: per second 1, 1.27, 1.35
    assert engine.tokens_per_step(2) == pytest.approx(2.7) and engine.draft_length(4) == 2
    engine.passed = torch.tensor([2.0, 1.0])  # 1, 1.2 / 1.5, 1.3 / 2: plain decoding is fastest
    assert engine.draft_length(4) == 0
    ro = engine.generate(["1+2="] * 4, SamplingConfig(temperature=0, max_new_tokens=6))
    plain = LeanEngine(model, tok).generate(["1+2="] * 4, SamplingConfig(temperature=0, max_new_tokens=6))
    assert torch.equal(ro.completion_ids, plain.completion_ids) and engine.steps == 10  # decoded plainly


@pytest.mark.parametrize("kind", ["medusa", "mtp"])
def test_a_draft_vocabulary_drafts_only_its_tokens_and_keeps_greedy_decoding_and_logprobs(kind, tmp_path):
    model, tok = peaked()
    heads = noisy_heads(model, kind, 2, scale=0.02)
    heads.set_vocab(part_vocab(model))
    h, y = torch.randn(64, SMALL.hidden_size), torch.randint(model.config.vocab_size, (64,))
    with torch.no_grad():
        drafts, logits = heads.draft(model, h, y, 2, SamplingConfig(temperature=1.0), torch.Generator().manual_seed(0))
    assert torch.isin(drafts, heads.vocab).all()
    outside = torch.ones(model.config.vocab_size, dtype=torch.bool)
    outside[heads.vocab] = False
    assert torch.isinf(logits[..., outside]).all() and torch.isfinite(logits[..., heads.vocab]).all()
    # the vocabulary's logits are the full head's rows of it
    w = model.lm_head.weight
    if kind == "medusa":
        with torch.no_grad():
            full = torch.nn.functional.linear(heads._block(0, h), w)
        torch.testing.assert_close(logits[:, 0, heads.vocab], full[:, heads.vocab])
    s = SamplingConfig(temperature=0, max_new_tokens=16)
    plain = LeanEngine(model, tok).generate(PROMPTS, s)
    engine = SpeculativeEngine(model, tok, heads, k=2)
    ro = engine.generate(PROMPTS, s)
    assert torch.equal(ro.completion_ids, plain.completion_ids)
    torch.testing.assert_close(ro.logprobs, plain.logprobs, atol=1e-5, rtol=0)
    assert 0 < engine.acceptance()[0] < 1
    # the head's rows are taken again after an in-place update of the head (as an optimiser step makes)
    with torch.no_grad():
        w.mul_(1.5)
        torch.testing.assert_close(heads.output(model)[0], w[heads.vocab])
        w.div_(1.5)
    # a fused AdamW step bumps no version counter: its owner says so (GRPO's optimiser hook)
    opt = torch.optim.AdamW([w], lr=0.1, fused=True)
    w.grad = torch.ones_like(w)
    opt.step()
    heads.weights_changed()
    torch.testing.assert_close(heads.output(model)[0], w.detach()[heads.vocab])
    save_heads(heads, tmp_path)
    assert torch.equal(load_heads(tmp_path, model).vocab, heads.vocab)
    with pytest.raises(ValueError, match="repeats a token id"):
        heads.set_vocab(torch.tensor([3, 1, 3]))


def test_teacher_and_the_vocabulary_by_probability_mass():
    model, tok = peaked()
    h = torch.randn(5, 7, SMALL.hidden_size)
    vocab = torch.tensor([0, 4, 9])
    p, top, mass = teacher(model, h, vocab, rows=3)
    with torch.no_grad():
        full = model.lm_head(h).double().softmax(-1)
    torch.testing.assert_close(p.double(), full[..., vocab], atol=1e-6, rtol=1e-5)
    assert torch.equal(top, full.argmax(-1))
    torch.testing.assert_close(mass.double(), full.sum((0, 1)), atol=1e-5, rtol=1e-5)
    assert torch.equal(vocab_by_mass(torch.tensor([0.1, 3.0, 0.1, 2.0, 0.5]), 3), torch.tensor([1, 3, 4]))
    assert torch.equal(vocab_by_mass(torch.tensor([0.1, 3.0, 0.1, 2.0]), 3), torch.tensor([1, 3, 0]))  # tie: lower id


def test_distillation_chooses_the_draft_vocabulary_from_the_policys_samples():
    """fit and a single step_on pick the top-N tokens by the policy's summed probability on its samples, once."""
    model, tok = peaked()
    prompts = [r["prompt"] for r in arithmetic(n_train=32, n_test=8, seed=0).train]
    heads = draft_heads(model, "medusa", 1)
    trainer = DraftTrainer(model, tok, heads, DraftConfig(total_steps=2, vocab=12, samples=16, max_new_tokens=8))
    blocks = trainer.sample(prompts)
    trainer.fit(blocks)
    ids, mask, start = blocks[0]
    _, _, mass = teacher(model, trunk(model, ids, mask)[:, start:][mask[:, start:].bool()], torch.empty(0, dtype=torch.long))
    assert torch.equal(heads.vocab, mass.topk(12).indices.sort().values)
    # one update on a batch (GRPO's refresh) chooses the same vocabulary, and later updates keep it
    fresh = draft_heads(model, "mtp", 1)
    online = DraftTrainer(model, tok, fresh, DraftConfig(vocab=12))
    online.step_on(ids, mask, start)
    assert torch.equal(fresh.vocab, heads.vocab)
    online.step_on(*blocks[0][:2], 0)
    assert torch.equal(fresh.vocab, heads.vocab)
