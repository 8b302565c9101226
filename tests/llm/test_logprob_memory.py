"""Log-probs a chunk of positions at a time (real vocabularies): the same numbers and gradients as one dense pass."""

import pytest
import torch

from bellman.llm import logprobs as lp
from bellman.llm.batching import encode_completions, encode_prompts
from bellman.llm.engine import HFEngine, LeanEngine
from bellman.llm.model import TinyConfig, tiny_model
from bellman.llm.sft import packed_sft_loss, sft_loss

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    model, tok = tiny_model(TinyConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=2), seed=0)
    return model, tok


def batch(tok, n=3):
    prompts = ["12+345=", "7+8=", "100+1="]
    completions = [f"{i}{c}" for c in ("357", "15", "101 and more") for i in range(n)]
    p = encode_prompts(tok, prompts)
    c = encode_completions(tok, completions)
    return p, c


def values_and_grads(model, fn):
    model.zero_grad(set_to_none=True)
    out = fn()
    (out.sum() if out.dim() else out).backward()
    return out.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("engine_cls,shared", [(HFEngine, False), (HFEngine, True), (LeanEngine, True)])
def test_chunked_logprobs_equal_the_dense_pass(tiny, monkeypatch, engine_cls, shared):
    model, tok = tiny
    (p_ids, p_mask), (c_ids, c_mask) = batch(tok)
    if not shared:
        p_ids, p_mask = p_ids.repeat_interleave(3, 0), p_mask.repeat_interleave(3, 0)
    engine = engine_cls(model, tok)

    def run():
        return engine.logprobs(p_ids, p_mask, c_ids, c_mask, temperature=0.7, shared_prompt=shared)

    dense, dense_grads = values_and_grads(model, run)
    monkeypatch.setattr(lp, "LOGITS_BUDGET", 5 * len(tok))   # 5 positions' logits at a time
    chunked, chunked_grads = values_and_grads(model, run)
    assert torch.allclose(chunked, dense, atol=1e-6, rtol=0) and (chunked[c_mask == 0] == 0).all()
    for a, b in zip(chunked_grads, dense_grads):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_the_hidden_state_path_equals_the_models_own_logits(tiny, monkeypatch):
    """Llama's logits are lm_head(decoder(...)): scoring from the hidden states gives what the model's forward
    gives, bit for bit when all logits fit the budget."""
    model, tok = tiny
    (p_ids, p_mask), (c_ids, c_mask) = batch(tok)
    p_ids, p_mask = p_ids.repeat_interleave(3, 0), p_mask.repeat_interleave(3, 0)
    with torch.no_grad():
        hidden = lp.completion_logprobs(model, p_ids, p_mask, c_ids, c_mask)
        hidden_shared = HFEngine(model, tok).logprobs(p_ids[::3], p_mask[::3], c_ids, c_mask, shared_prompt=True)
        monkeypatch.setattr(lp, "PLAIN_HEAD", ())
        assert lp.plain_head(model) is None
        logits = lp.completion_logprobs(model, p_ids, p_mask, c_ids, c_mask)
        logits_shared = HFEngine(model, tok).logprobs(p_ids[::3], p_mask[::3], c_ids, c_mask, shared_prompt=True)
    assert torch.equal(hidden, logits) and torch.equal(hidden_shared, logits_shared)


def test_packed_sft_loss_chunked_equals_dense(tiny, monkeypatch):
    model, tok = tiny
    engine = LeanEngine(model, tok)
    prompts, completions = ["12+345=", "7+8=", ""], ["357", "15", "a b c d"]
    dense, dense_grads = values_and_grads(model, lambda: packed_sft_loss(engine, prompts, completions))
    padded = sft_loss(engine, prompts[:2], completions[:2])
    monkeypatch.setattr(lp, "LOGITS_BUDGET", 3 * len(tok))
    chunked, chunked_grads = values_and_grads(model, lambda: packed_sft_loss(engine, prompts, completions))
    assert torch.allclose(chunked, dense, atol=1e-6) and torch.allclose(
        sft_loss(engine, prompts[:2], completions[:2]), padded, atol=1e-6)
    for a, b in zip(chunked_grads, dense_grads):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_decoding_keeps_the_drawn_tokens_logprobs_only(tiny):
    """The sampler's log-probs are the scoring pass's, though decoding keeps no (B, T, V) logits."""
    from bellman.llm.rollout import SamplingConfig
    model, tok = tiny
    engine = LeanEngine(model.eval(), tok)
    ro = engine.generate(["12+345=", "7+8="] * 2, SamplingConfig(temperature=0.8, top_k=20, max_new_tokens=12), seed=3)
    with torch.no_grad():
        again = engine.logprobs(ro.prompt_ids, ro.prompt_mask, ro.completion_ids, ro.completion_mask, temperature=0.8)
    assert torch.allclose(ro.logprobs, again, atol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_and_their_gradient_match_float64_log_softmax(temperature):
    """z_t - logsumexp(z) with the one-pass gradient: the float64 log-softmax's values (within 2e-6 at a real
    vocabulary, where float32 log_softmax is off by up to ~1e-5) and gradients (gradcheck in float64)."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 49_152, generator=g) * 3
    tokens = torch.randint(0, 49_152, (64,), generator=g)
    exact = torch.log_softmax(logits.double() / temperature, -1).gather(-1, tokens[:, None]).squeeze(1)
    assert (lp.token_logprobs(logits, tokens, temperature) - exact).abs().max() < 2e-6
    small = torch.randn(3, 4, 7, dtype=torch.float64, generator=g).requires_grad_()
    picks = torch.randint(0, 7, (3, 4), generator=g)

    def f(z):   # token_logprobs computes in float32 (.float()); gradcheck needs float64: the Function itself
        return lp._TokenLogProb.apply(z / temperature, picks)

    assert torch.autograd.gradcheck(f, (small,))
    ref = torch.log_softmax(small / temperature, -1).gather(-1, picks[..., None]).squeeze(-1)
    w = torch.randn(3, 4, dtype=torch.float64, generator=g)
    torch.testing.assert_close(torch.autograd.grad((f(small) * w).sum(), small)[0],
                               torch.autograd.grad((ref * w).sum(), small)[0])
