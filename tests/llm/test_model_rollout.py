"""Policy loading, the character tokenizer, log-prob gathering under left padding, the rollout engine."""

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from bellman.llm.batching import encode_completions, encode_prompts
from bellman.llm.engine import generate, get_engine
from bellman.llm.engine.lean import lean_supported
from bellman.llm.logprobs import completion_logprobs
from bellman.llm.model import TinyConfig, load_model, tiny_model
from bellman.llm.rollout import SamplingConfig, _filter, sample
from bellman.llm.tokenizer import char_tokenizer

torch.set_num_threads(1)


def shared_prompt_logprobs(model, *batch, temperature=1.0):
    """Log-probs of n completions per prompt row, the prompt run once (the engine's shared-prompt path)."""
    return get_engine(model, None).logprobs(*batch, temperature=temperature, shared_prompt=True)


@pytest.fixture(scope="module")
def tiny():
    model, tok = tiny_model(TinyConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=2), seed=0)
    return model.eval(), tok


def test_char_tokenizer_round_trip(tmp_path):
    tok = char_tokenizer()
    text = "12+345=357\n<think>a b</think><answer>7</answer>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text) and tok.unk_token_id not in ids
    assert tok.decode(ids) == text
    tok.save_pretrained(tmp_path)
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    assert tok2(text, add_special_tokens=False)["input_ids"] == ids
    assert (tok2.pad_token, tok2.eos_token) == ("<pad>", "<eos>")


def test_tiny_model_is_small_and_seeded():
    m1, _ = tiny_model(seed=3)
    m2, _ = tiny_model(seed=3)
    n = sum(p.numel() for p in m1.parameters())
    assert 100_000 < n < 5_000_000
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))


def test_save_and_load_round_trip(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    m2, tok2 = load_model(tmp_path)
    assert isinstance(AutoModelForCausalLM.from_pretrained(tmp_path), type(m2))
    p, pm = encode_prompts(tok2, ["1+2="])
    c, cm = encode_completions(tok2, ["3"])
    assert torch.allclose(completion_logprobs(model, p, pm, c, cm), completion_logprobs(m2.eval(), p, pm, c, cm))


def test_load_errors(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_model(tmp_path / "missing")
    with pytest.raises(ValueError, match="dtype"):
        load_model("tiny", dtype="float16")
    model, tok = tiny
    model.save_pretrained(tmp_path)
    tok.pad_token = None
    tok.save_pretrained(tmp_path)
    tok.pad_token = "<pad>"
    with pytest.raises(ValueError, match="no pad token"):
        load_model(tmp_path)


def test_lora_and_switches():
    from bellman.llm.model import LoraSpec
    model, _ = load_model("tiny", lora=LoraSpec(r=4), gradient_checkpointing=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)
    assert not lean_supported(model) and not lean_supported(load_model("tiny", gradient_checkpointing=True)[0])
    bf, _ = load_model("tiny", dtype="bfloat16")
    assert next(bf.parameters()).dtype == torch.bfloat16


def test_logprobs_left_padding_equal_unpadded_forward(tiny):
    model, tok = tiny
    prompts, completions = ["1+2=", "100+200=", "7"], ["3", "300", "abc de"]
    p, pm = encode_prompts(tok, prompts)
    c, cm = encode_completions(tok, completions)
    assert pm[0, 0] == 0 and pm[1].all()  # left padded
    batched = completion_logprobs(model, p, pm, c, cm)
    for i, (pr, co) in enumerate(zip(prompts, completions)):
        ids = torch.tensor([tok(pr + co, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1]
        n = len(co) + 1  # completion + EOS
        ref = torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None]).squeeze(-1)[-n:]
        torch.testing.assert_close(batched[i, :n], ref, atol=1e-5, rtol=1e-5)
        assert torch.all(batched[i, n:] == 0)  # padding carries nothing


def test_greedy_with_cache_equals_without(tiny):
    model, tok = tiny
    prompts = ["1+2=", "100+200=", "x", "hello world"]
    a = generate(model, tok, prompts, SamplingConfig(temperature=0, max_new_tokens=24))
    b = generate(model, tok, prompts, SamplingConfig(temperature=0, max_new_tokens=24, use_cache=False))
    assert torch.equal(a.completion_ids, b.completion_ids)
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=1e-5)


def qwen2_tiny():
    """A Qwen2 config (q/k/v biases, grouped-query attention: 4 query heads share 2 key/value heads)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM
    tok = char_tokenizer()
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(1)
    model = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():  # non-zero biases, so that dropping one would show
        for layer in model.model.layers:
            for lin in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                lin.bias.normal_(0, 0.5)
    return model, tok


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_lean_decoding_equals_hugging_face_generate(tiny, arch):
    model, tok = tiny if arch == "llama" else qwen2_tiny()
    assert lean_supported(model)
    prompts = ["1+2=", "100+200=", "1+2=", "x", "hello world", "100+200="]  # repeats: prefilled once
    ro = generate(model, tok, prompts, SamplingConfig(temperature=0, max_new_tokens=12))
    p, pm = encode_prompts(tok, prompts)
    hf = model.generate(input_ids=p, attention_mask=pm, do_sample=False, max_new_tokens=12,
                        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)[:, p.shape[1]:]
    assert torch.equal(ro.completion_ids, hf)
    recomputed = completion_logprobs(model, ro.prompt_ids, ro.prompt_mask, ro.completion_ids, ro.completion_mask)
    torch.testing.assert_close(ro.logprobs, recomputed, atol=1e-5, rtol=1e-5)
    # sampling: the same seed gives the same rollout as decoding through HF's forward (no cache)
    a = generate(model, tok, prompts, SamplingConfig(temperature=1.0, max_new_tokens=12), seed=3)
    b = generate(model, tok, prompts, SamplingConfig(temperature=1.0, max_new_tokens=12, use_cache=False), seed=3)
    assert torch.equal(a.completion_ids, b.completion_ids)
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_shared_prompt_tree_equals_repeated_prompts(tiny, arch):
    model, tok = tiny if arch == "llama" else qwen2_tiny()
    prompts = ["1+2=", "hello world", "7"]
    ro = generate(model, tok, [q for q in prompts for _ in range(3)], SamplingConfig(max_new_tokens=10), seed=0)
    p_ids, p_mask = ro.prompt_ids[::3], ro.prompt_mask[::3]
    grads = []
    for fn, p in ((shared_prompt_logprobs, (p_ids, p_mask)), (completion_logprobs, (ro.prompt_ids, ro.prompt_mask))):
        model.zero_grad()
        logp = fn(model, *p, ro.completion_ids, ro.completion_mask, temperature=0.8)
        logp.sum().backward()
        grads.append((logp.detach(), [q.grad.clone() for q in model.parameters()]))
    (shared, g_shared), (plain, g_plain) = grads
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=1e-5)
    for a, b in zip(g_shared, g_plain):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    model.zero_grad(set_to_none=True)
    half = copy.deepcopy(model).to(torch.bfloat16)  # the same numbers up to bfloat16 rounding
    with torch.inference_mode():
        torch.testing.assert_close(shared_prompt_logprobs(half, p_ids, p_mask, ro.completion_ids, ro.completion_mask),
                                   completion_logprobs(half, ro.prompt_ids, ro.prompt_mask, ro.completion_ids,
                                                       ro.completion_mask), atol=0.1, rtol=0.05)


def test_prompt_tree_holds_each_needed_token_once_and_handles_empty_completions(tiny):
    from bellman.llm.engine.lean import PromptTree
    model, tok = tiny
    p_ids, p_mask = encode_prompts(tok, ["1+2=", "33+44="])
    c_ids, c_mask = encode_completions(tok, ["3", "", "77", "123"])  # lengths with EOS: 2, 1, 3, 4
    c_mask[1, 0] = 0  # a row with no completion token at all
    tree = PromptTree(model, p_ids, p_mask, c_ids, c_mask)
    # every prompt token, then completion tokens 0 .. L - 2 (no logit is read after the last): 1 + 2 + 3
    assert tree.ids.shape == (1, p_ids.numel() + 6)
    assert tree.ids[0, p_ids.numel():].tolist() == tok("3" + "77" + "123", add_special_tokens=False)["input_ids"]
    shared = shared_prompt_logprobs(model, p_ids, p_mask, c_ids, c_mask)
    plain = completion_logprobs(model, p_ids.repeat_interleave(2, 0), p_mask.repeat_interleave(2, 0), c_ids, c_mask)
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=1e-5)
    assert shared[1].abs().sum() == 0


def test_lean_forward_errors(tiny):
    from bellman.llm.engine.lean import lean_forward
    model, tok = tiny
    ids, mask = encode_prompts(tok, ["1+2=", "7"])
    with pytest.raises(ValueError, match="attention_mask"):
        lean_forward(model, ids, mask[:, 1:], mask.cumsum(1) - 1)
    with pytest.raises(ValueError, match="Llama / Qwen2"):
        lean_forward(load_model("tiny", gradient_checkpointing=True)[0], ids, mask, mask.cumsum(1) - 1)
    with pytest.raises(ValueError, match="segments"):
        lean_forward(model, ids, mask, mask.cumsum(1) - 1, segments=mask[:, 1:])


def test_lean_forward_segments_give_each_packed_sequence_its_own_forward(tiny):
    from bellman.llm.engine.lean import lean_forward
    model, tok = tiny
    a, b = (tok(t, add_special_tokens=False)["input_ids"] for t in ("12+34=46", "7+8=15"))
    ids = torch.tensor([a + b])
    segments = torch.tensor([[1] * len(a) + [2] * len(b)])
    positions = torch.tensor([list(range(len(a))) + list(range(len(b)))])
    with torch.no_grad():
        packed = lean_forward(model, ids, segments > 0, positions, segments=segments)[0]
        alone = [model(torch.tensor([x])).logits[0] for x in (a, b)]
    torch.testing.assert_close(packed, torch.cat(alone), rtol=1e-5, atol=1e-5)


def test_models_outside_the_lean_path_decode_through_their_own_forward(tiny):
    from peft import LoraConfig, get_peft_model
    model, tok = tiny
    peft_model = get_peft_model(tiny_model(TinyConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                      num_attention_heads=2), seed=0)[0],
                                LoraConfig(r=2, target_modules="all-linear")).eval()
    assert not lean_supported(peft_model)  # fresh LoRA adapters leave the model's outputs unchanged
    s = SamplingConfig(temperature=0, max_new_tokens=10)
    a, b = generate(model, tok, ["12+3=", "7"], s), generate(peft_model, tok, ["12+3=", "7"], s)
    assert torch.equal(a.completion_ids, b.completion_ids)
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=1e-5)


def test_sampling_logprobs_masks_and_seed(tiny):
    model, tok = tiny
    prompts = ["1+2=", "100+200="] * 4
    s = SamplingConfig(temperature=1.3, top_p=0.9, top_k=20, max_new_tokens=40)
    a, b = generate(model, tok, prompts, s, seed=5), generate(model, tok, prompts, s, seed=5)
    assert torch.equal(a.completion_ids, b.completion_ids)
    recomputed = completion_logprobs(model, a.prompt_ids, a.prompt_mask, a.completion_ids, a.completion_mask, 1.3)
    torch.testing.assert_close(recomputed, a.logprobs, atol=1e-5, rtol=1e-5)
    for ids, m, trunc in zip(a.completion_ids, a.completion_mask, a.truncated):
        n = int(m.sum())
        assert m[:n].all() and not m[n:].any()  # mask is a prefix
        if not trunc:
            assert ids[n - 1] == tok.eos_token_id  # EOS is the last masked-in token
        assert (ids[n:] == tok.pad_token_id).all()


def test_top_k_top_p_filter():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(_filter(logits, 2, 1.0)[0, 2:]).all() and torch.isfinite(_filter(logits, 2, 1.0)[0, :2]).all()
    kept = torch.isfinite(_filter(logits, 0, 0.7))[0].tolist()
    assert kept == [True, True, False, False]  # 0.5 < 0.7 <= 0.8


def test_sample_draws_tokens_with_the_filtered_softmax_probabilities():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05])).expand(40_000, 4)
    g = torch.Generator().manual_seed(0)
    for s, expected in ((SamplingConfig(temperature=1.0), [0.5, 0.3, 0.15, 0.05]),
                        (SamplingConfig(temperature=1.0, top_k=3), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0]),
                        # T = 2: p ~ sqrt(p), (0.379, 0.293, 0.208, 0.120); top-p 0.7 keeps the first three
                        (SamplingConfig(temperature=2.0, top_p=0.7), [x / sum(q ** 0.5 for q in (0.5, 0.3, 0.15))
                                                                      for x in (0.5 ** 0.5, 0.3 ** 0.5, 0.15 ** 0.5, 0)])):
        freq = torch.bincount(sample(logits, s, g), minlength=4) / logits.shape[0]
        torch.testing.assert_close(freq, torch.tensor(expected), atol=0.01, rtol=0)  # 4 standard errors
    assert torch.equal(sample(logits[:3], SamplingConfig(temperature=0)), torch.zeros(3, dtype=torch.long))


def test_sampling_config_errors():
    for bad in (dict(temperature=-1), dict(top_p=0), dict(top_k=-1), dict(max_new_tokens=0)):
        with pytest.raises(ValueError):
            SamplingConfig(**bad)


def test_planted_weights_file_is_refused_without_running(tmp_path, monkeypatch):
    import os

    class Planted:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'planted'}",))

    model, tok = load_model("tiny", seed=0)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    torch.save({**model.state_dict(), "x": Planted()}, tmp_path / "m" / "pytorch_model.bin")
    with pytest.raises(ValueError, match="hold something other than tensors and were refused"):
        load_model(tmp_path / "m")
    assert not (tmp_path / "planted").exists()


def test_decode_drops_finished_rows_without_changing_any_rows_draws():
    """An engine that can drop finished rows (``keep_rows``) runs later steps on the rows still decoding only;
    every row's tokens and log-probs are those of the loop that runs all rows to the end."""
    from bellman.llm.rollout import decode
    v, eos, pad, b = 6, 5, 0, 16

    def logits_for(rows, t):  # row r favours EOS from step r // 2 on: rows end at different steps
        z = torch.arange(v, dtype=torch.float).repeat(len(rows), 1, 1) * 0.3
        z[:, 0, eos] = torch.where(rows // 2 <= t, 6.0, -6.0)
        return z

    def run(drop):
        rows, sizes = torch.arange(b), []

        def step(t, nxt):
            sizes.append(len(nxt))
            assert len(nxt) == len(rows)
            return logits_for(rows, t + 1)

        def keep_rows(index):
            nonlocal rows
            rows = rows[index]

        ids = torch.ones(b, 2, dtype=torch.long)
        ro = decode(ids, torch.ones_like(ids), SamplingConfig(temperature=1.0, max_new_tokens=12),
                    torch.Generator().manual_seed(0), eos, pad, logits_for(rows, 0), step,
                    keep_rows if drop else None)
        return ro, sizes

    (full, all_rows), (dropped, fewer) = run(False), run(True)
    assert set(all_rows) == {b} and fewer[-1] < fewer[0] <= b and sum(fewer) < sum(all_rows)
    lengths = full.completion_mask.sum(1)
    assert len(set(lengths.tolist())) > 4   # rows did end at different steps
    for name in ("completion_ids", "completion_mask", "logprobs", "truncated"):
        assert torch.equal(getattr(full, name), getattr(dropped, name)), name
