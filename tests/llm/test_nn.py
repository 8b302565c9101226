"""The built-in model's switches: linear attention's two forms agree, RoPE scalings match their formulas and
transformers, log-n's factor, save / load of every switch, clear errors, the engines and GRPO on them."""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

from bellman.llm import linear_attention as la
from bellman.llm.batching import position_ids
from bellman.llm.engine import HFEngine, LeanEngine, get_engine
from bellman.llm.engine.lean import lean_supported
from bellman.llm.grpo import GRPOConfig, GRPOTrainer
from bellman.llm.logprobs import completion_logprobs
from bellman.llm.model import TinyConfig, load_model, tiny_model
from bellman.llm.nn import BellmanConfig, BellmanForCausalLM, ModelParts, from_llama, policy_config
from bellman.llm.reward_model import RewardModel
from bellman.llm.rollout import SamplingConfig
from bellman.llm.rope import apply_rope_scaling, logn_factor, rope_parameters
from bellman.llm.tasks import Task, arithmetic

torch.set_num_threads(1)
SIZE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
LINEAR = [dict(attention="linear", feature_map=f, linear_norm=n)
          for f in ("elu", "performer", "cosformer") for n in ("sum", "rms")]
SWITCHED = [dict(activation=a, bias=b) for a in ("relu", "gelu", "silu", "geglu") for b in (False, True)] + LINEAR + [
    dict(logn_scaling=True, max_position_embeddings=8), dict(rope_scaling="yarn", rope_factor=4.0),
    dict(rope_scaling="ntk", rope_factor=2.0, logn_scaling=True), dict(attention="linear", rope_scaling="linear",
                                                                      rope_factor=2.0)]


def build(seed=0, **kw):
    """The tiny model of size SIZE (with any TinyConfig field in ``kw``) and the parts in ``kw``."""
    size = {k: kw.pop(k) for k in list(kw) if k in TinyConfig.__dataclass_fields__}
    return tiny_model(TinyConfig(**{**SIZE, **size}), seed=seed, parts=ModelParts(**kw))


def padded_batch(seed=0, b=3, t=10, vocab=90):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, :4] = 0  # left padding
    mask[2, :1] = 0
    return ids, mask, position_ids(mask)


def features(seed, b=2, h=3, t=9, m=4, dv=5):
    g = torch.Generator().manual_seed(seed)
    a_q, a_k = torch.randn(b, h, t, m, generator=g), torch.randn(b, h, t, m, generator=g)
    b_q, b_k = torch.rand(b, h, t, m, generator=g), torch.rand(b, h, t, m, generator=g)
    b_k[0, :, :2] = 0  # padding keys carry no features
    a_k[0, :, :2] = 0
    return a_q, a_k, b_q, b_k, torch.randn(b, h, t, dv, generator=g)


# ---- linear attention: the two forms


@pytest.mark.parametrize("normalise", [True, False])
def test_recurrent_and_parallel_linear_attention_agree_with_the_sums_they_stand_for(normalise):
    a_q, a_k, b_q, b_k, v = features(0)
    par, (s, z) = la.parallel(a_q, a_k, b_q, b_k, v, normalise=normalise)
    state, steps = None, []
    for i in range(v.shape[2]):
        o, state = la.recurrent(*(x[:, :, i:i + 1] for x in (a_q, a_k, b_q, b_k, v)), state, normalise=normalise)
        steps.append(o)
    torch.testing.assert_close(torch.cat(steps, 2), par, atol=1e-5, rtol=0)
    torch.testing.assert_close(state[0], s, atol=1e-5, rtol=0)
    torch.testing.assert_close(state[1], z, atol=1e-5, rtol=0)
    # the chunk form: 4 tokens, then 5 more after their state
    first, st = la.parallel(*(x[:, :, :4] for x in (a_q, a_k, b_q, b_k, v)), normalise=normalise)
    rest, _ = la.parallel(*(x[:, :, 4:] for x in (a_q, a_k, b_q, b_k, v)), st, normalise=normalise)
    torch.testing.assert_close(torch.cat([first, rest], 2), par, atol=1e-5, rtol=0)
    blocks, (s2, z2) = la.chunked(a_q, a_k, b_q, b_k, v, normalise=normalise, chunk=2)
    torch.testing.assert_close(blocks, par, atol=1e-5, rtol=0)
    torch.testing.assert_close(s2, s, atol=1e-5, rtol=0)
    # o_i = sum_{j<=i} (a_q_i . a_k_j) v_j / (sum_{j<=i} b_q_i . b_k_j + eps), written out
    i = 6
    num = sum((a_q[..., i, :] * a_k[..., j, :]).sum(-1, keepdim=True) * v[..., j, :] for j in range(i + 1))
    den = sum((b_q[..., i, :] * b_k[..., j, :]).sum(-1, keepdim=True) for j in range(i + 1)) + la.EPS
    torch.testing.assert_close(par[..., i, :], num / den if normalise else num, atol=1e-5, rtol=1e-5)


def test_performer_features_estimate_the_softmax_kernel():
    g = torch.Generator().manual_seed(0)
    d, m = 8, 4096
    q, k = 0.5 * torch.randn(d, generator=g), 0.5 * torch.randn(d, generator=g)
    w = la.orthogonal_features(m, d, g)
    rows = w[:d]  # one orthogonal block
    torch.testing.assert_close(rows / rows.norm(dim=1, keepdim=True) @ (rows / rows.norm(dim=1, keepdim=True)).T,
                               torch.eye(d), atol=1e-5, rtol=0)
    estimate = (la.features(q, "performer", w) * la.features(k, "performer", w)).sum()
    assert estimate.item() == pytest.approx(math.exp(q @ k / math.sqrt(d)), rel=0.05)


def test_cosformer_features_give_the_cos_reweighting():
    g = torch.Generator().manual_seed(0)
    phi_q, phi_k = torch.rand(1, 1, 5, 3, generator=g), torch.rand(1, 1, 5, 3, generator=g)
    pos, m = torch.arange(5)[None], 8
    a = la.cos_reweight(phi_q, pos, m) @ la.cos_reweight(phi_k, pos, m).transpose(-1, -2)
    i, j = 4, 1
    assert a[0, 0, i, j].item() == pytest.approx((phi_q[0, 0, i] @ phi_k[0, 0, j]).item()
                                                 * math.cos(math.pi / 2 * (i - j) / m), rel=1e-6)
    with pytest.raises(ValueError, match="positions below M = max_position_embeddings = 4"):
        la.cos_reweight(phi_q, pos, 4)


@pytest.mark.parametrize("switches", LINEAR, ids=lambda s: f"{s['feature_map']}-{s['linear_norm']}")
def test_linear_attention_model_decodes_token_by_token_with_the_numbers_of_its_parallel_forward(switches):
    model, _ = build(**switches)
    model.eval()
    ids, mask, pos = padded_batch()
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        out = model(input_ids=ids[:, :5], attention_mask=mask[:, :5], position_ids=pos[:, :5], use_cache=True)
        steps, cache = [out.logits], out.cache
        for i in range(5, ids.shape[1]):
            out = model(input_ids=ids[:, i:i + 1], attention_mask=mask[:, :i + 1], position_ids=pos[:, i:i + 1],
                        cache=cache, use_cache=True)
            steps.append(out.logits)
        state = cache.layers[0].recurrent_states[0]
    assert state.shape[2:] == ((2 if switches["feature_map"] == "cosformer" else 1) * 16, 16)  # (m, d): O(1)
    real = mask.bool()
    torch.testing.assert_close(torch.cat(steps, 1)[real], full[real], atol=1e-5, rtol=0)


# ---- the model against Llama


def test_the_built_in_model_with_llamas_switches_is_llama():
    llama, _ = tiny_model(TinyConfig(**SIZE), seed=0)
    assert type(llama).__name__ == "LlamaForCausalLM"
    ids, mask, pos = padded_batch()
    for m in (from_llama(llama), BellmanForCausalLM(BellmanConfig(**llama.config.to_diff_dict()))):
        m.load_state_dict(llama.state_dict())
        with torch.no_grad():
            a = llama(input_ids=ids, attention_mask=mask, position_ids=pos).logits
            b = m(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        torch.testing.assert_close(b[mask.bool()], a[mask.bool()], atol=1e-6, rtol=0)


def test_policy_config_uses_llamas_own_switches_where_it_has_them():
    base = dict(vocab_size=50, max_position_embeddings=16, **SIZE)
    geglu = policy_config(ModelParts(activation="geglu", bias=True, rope_scaling="linear", rope_factor=2.0), **base)
    assert type(geglu) is LlamaConfig
    assert (geglu.hidden_act, geglu.attention_bias, geglu.mlp_bias) == ("gelu", True, True)
    assert geglu.rope_parameters == {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}
    relu = policy_config(ModelParts(activation="relu"), **base)
    assert type(relu) is BellmanConfig and (relu.hidden_act, relu.gated_mlp) == ("relu", False)
    assert policy_config(ModelParts(attention="linear"), **base).layer_types == ["linear_attention"] * 2
    # a plain MLP of 3/2 the width has the gated one's parameters (Shazeer 2020's matching)
    n = {a: sum(p.numel() for p in build(intermediate_size=w, activation=a)[0].parameters())
         for a, w in (("swiglu", 64), ("relu", 96))}
    assert n["swiglu"] == n["relu"]


# ---- RoPE scalings


def rotary(scaling, factor, length=16, theta=10000.0, d=16):
    cfg = policy_config(ModelParts(rope_scaling=scaling, rope_factor=factor), vocab_size=50,
                        max_position_embeddings=length, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                        num_attention_heads=32 // d, rope_theta=theta)
    return LlamaRotaryEmbedding(config=cfg)


def cos_sin(rot, n):
    return rot(torch.zeros(1), torch.arange(n)[None])


@pytest.mark.parametrize("scaling", ["linear", "ntk", "dynamic-ntk", "yarn"])
def test_each_rope_scaling_at_factor_1_is_plain_rope(scaling):
    plain, scaled = cos_sin(rotary("none", 1.0), 16), cos_sin(rotary(scaling, 1.0), 16)  # up to L (dynamic: only there)
    for a, b in zip(plain, scaled):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_ntk_is_a_larger_base_and_dynamic_ntk_follows_the_length_as_transformers_computes_it():
    d, length, s = 16, 16, 4.0
    ntk = rope_parameters("ntk", s, rope_theta=10000.0, head_dim=d, length=length)
    assert ntk == {"rope_type": "default", "rope_theta": pytest.approx(10000.0 * s ** (16 / 14))}
    base = 10000.0 ** -(torch.arange(0, d, 2).float() / d)
    torch.testing.assert_close(rotary("ntk", s).inv_freq, base / s ** (torch.arange(0, d, 2).float() / (d - 2)))
    # dynamic NTK at length n > L: b' = b (s n / L - s + 1)^(d / (d - 2)), plain RoPE up to L
    rot, n = rotary("dynamic-ntk", s), 40
    cos, sin = cos_sin(rot, n)
    b = 10000.0 * (s * n / length - s + 1) ** (d / (d - 2))
    angles = torch.arange(n).float()[:, None] * b ** -(torch.arange(0, d, 2).float() / d)
    torch.testing.assert_close(cos[0, :, :d // 2], angles.cos(), atol=1e-5, rtol=0)
    torch.testing.assert_close(sin[0, :, :d // 2], angles.sin(), atol=1e-5, rtol=0)
    expected, _ = ROPE_INIT_FUNCTIONS["dynamic"](rot.config, seq_len=n)
    torch.testing.assert_close(rot.inv_freq, expected)
    # static NTK by s is transformers' dynamic NTK of factor 1 at length s L
    one = rotary("dynamic-ntk", 1.0)
    cos_sin(one, int(s * length))
    torch.testing.assert_close(one.inv_freq, rotary("ntk", s).inv_freq)


def test_yarn_is_transformers_yarn_with_its_temperature_and_bands():
    s, length, d = 4.0, 16, 16
    rot = rotary("yarn", s, length=length, d=d)
    cfg = LlamaConfig(vocab_size=50, max_position_embeddings=length, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=1, num_attention_heads=2,
                      rope_parameters={"rope_type": "yarn", "factor": s, "original_max_position_embeddings": length})
    inv_freq, attention_factor = ROPE_INIT_FUNCTIONS["yarn"](cfg)
    torch.testing.assert_close(rot.inv_freq, inv_freq)
    assert rot.attention_scaling == attention_factor == pytest.approx(0.1 * math.log(s) + 1)
    plain = rotary("none", 1.0, length=length, d=d).inv_freq
    assert rot.inv_freq[0] == plain[0] and rot.inv_freq[-1] == pytest.approx(plain[-1] / s)  # fast kept, slow / s
    cos, _ = cos_sin(rot, 3)
    assert cos[0, 0, 0].item() == pytest.approx(attention_factor)  # cos(0) times the temperature


def test_apply_rope_scaling_to_a_loaded_model_and_back_from_disk(tmp_path):
    model, tok = tiny_model(TinyConfig(**SIZE, max_position_embeddings=8), seed=0)
    model.save_pretrained(tmp_path / "plain")
    tok.save_pretrained(tmp_path / "plain")
    loaded, _ = load_model(tmp_path / "plain")
    ids, mask, pos = padded_batch(t=20)
    with torch.no_grad():
        plain = loaded(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        scaled = apply_rope_scaling(loaded, "yarn", 2.0)
        assert scaled is loaded and loaded.config.rope_parameters["rope_type"] == "yarn"
        yarn = loaded(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    assert not torch.allclose(plain, yarn)
    with pytest.raises(ValueError, match="already scaled"):
        apply_rope_scaling(loaded, "ntk", 2.0)
    loaded.save_pretrained(tmp_path / "yarn")
    tok.save_pretrained(tmp_path / "yarn")
    again, _ = load_model(tmp_path / "yarn")
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids, attention_mask=mask, position_ids=pos).logits, yarn)
    # log-n on a Llama: the same weights in the built-in model, the same numbers within the trained length
    fresh, _ = load_model(tmp_path / "plain")
    logn = apply_rope_scaling(fresh, "ntk", 2.0, logn=True)
    assert isinstance(logn, BellmanForCausalLM) and logn.config.logn_scaling
    assert logn.config.rope_parameters["rope_theta"] == pytest.approx(10000.0 * 2 ** (16 / 14))
    short = (slice(None), slice(0, 8))
    ntk, _ = load_model(tmp_path / "plain")
    apply_rope_scaling(ntk, "ntk", 2.0)
    with torch.no_grad():
        a = logn(input_ids=ids[short], attention_mask=mask[short], position_ids=pos[short]).logits
        b = ntk(input_ids=ids[short], attention_mask=mask[short], position_ids=pos[short]).logits
    real = mask[short].bool()  # (the two models give padding queries different, unused, outputs)
    torch.testing.assert_close(a[real], b[real], atol=1e-6, rtol=0)


# ---- log-n


def test_logn_factor_is_log_base_L_of_the_position_past_L():
    f = logn_factor(torch.tensor([0, 7, 8, 15, 63]), 8)
    torch.testing.assert_close(f, torch.tensor([1.0, 1.0, math.log(9) / math.log(8), 4 / 3, 2.0]))
    with pytest.raises(ValueError, match="trained length >= 2"):
        logn_factor(torch.tensor([0]), 1)


def test_logn_attention_scales_the_queries_scores():
    cfg = policy_config(ModelParts(logn_scaling=True), vocab_size=50, max_position_embeddings=4, **SIZE)
    torch.manual_seed(0)
    model = BellmanForCausalLM(cfg).eval()
    attn, t = model.model.layers[0].self_attn, 12
    x = torch.randn(1, t, 32)
    pos = torch.arange(t)[None]
    emb = model.model.rotary_emb(x, pos)
    allowed = torch.ones(t, t, dtype=torch.bool).tril()[None, None]
    with torch.no_grad():
        out = attn(x, emb, pos, allowed)
        q = attn.q_proj(x).view(1, t, 2, 16).transpose(1, 2)
        k = attn.k_proj(x).view(1, t, 2, 16).transpose(1, 2)
        v = attn.v_proj(x).view(1, t, 2, 16).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, *emb)
        f = torch.tensor([max(1.0, math.log(m + 1) / math.log(4)) for m in range(t)])
        scores = (q * f[:, None]) @ k.transpose(-1, -2) / 4.0  # sqrt(d) = 4
        w = torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1)
        expected = attn.o_proj((w @ v).transpose(1, 2).reshape(1, t, 32))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


# ---- save / load, errors


@pytest.mark.parametrize("switches", SWITCHED, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_every_switch_survives_save_and_load(switches, tmp_path):
    model, tok = build(seed=1, **switches)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again, _ = load_model(tmp_path)
    assert type(again) is type(model) and type(AutoModelForCausalLM.from_pretrained(tmp_path)) is type(model)
    assert again.config.to_diff_dict() == model.config.to_diff_dict()
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    ids, mask, pos = padded_batch(t=12)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(input_ids=ids, attention_mask=mask, position_ids=pos).logits,
                                   model.eval()(input_ids=ids, attention_mask=mask, position_ids=pos).logits,
                                   atol=0, rtol=0)


@pytest.mark.parametrize("bad, message", [
    (dict(activation="tanh"), "activation must be one of"),
    (dict(attention="sparse"), "attention must be one of"),
    (dict(attention="linear", feature_map="rbf"), "feature_map must be one of"),
    (dict(rope_scaling="yarn", rope_factor=0.5), "factor must be a number >= 1"),
    (dict(rope_scaling="longrope", rope_factor=2.0), "rope_scaling must be one of"),
    (dict(rope_factor=2.0), "needs a rope_scaling"),
    (dict(feature_map="performer"), "settings of linear attention"),
    (dict(attention="linear", logn_scaling=True), "linear attention has no softmax"),
    (dict(attention="linear", feature_map="cosformer", rope_scaling="ntk", rope_factor=2.0), "no RoPE to scale"),
])
def test_bad_switches_give_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        ModelParts(**bad)


def test_bad_configs_and_scalings_give_clear_errors():
    with pytest.raises(Exception, match="linear attention has none to drop"):
        BellmanConfig(attention="linear", attention_dropout=0.1)
    with pytest.raises(Exception, match="linear attention has no softmax"):
        BellmanConfig(attention="linear", logn_scaling=True)
    model, _ = tiny_model(TinyConfig(**SIZE), seed=0)
    with pytest.raises(ValueError, match="factor must be a number >= 1"):
        apply_rope_scaling(model, "linear", 0.9)
    cos, _ = build(attention="linear", feature_map="cosformer", max_position_embeddings=8)
    with pytest.raises(ValueError, match="positions below M"):
        cos(input_ids=torch.ones(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="from_llama takes a LlamaForCausalLM"):
        from_llama(cos)


# ---- engines, trainers


@pytest.mark.parametrize("switches", [dict(attention="linear"), dict(activation="relu", logn_scaling=True,
                                                                    max_position_embeddings=6)])
def test_the_hf_engine_runs_the_built_in_model_cached_and_shared(switches):
    model, tok = build(**switches)
    model.eval()
    assert not lean_supported(model) and type(get_engine(model, tok)) is HFEngine
    engine = get_engine(model, tok)
    prompts = [q for q in ("1+2=", "100+200=") for _ in range(2)]
    a = engine.generate(prompts, SamplingConfig(temperature=0, max_new_tokens=6))
    b = engine.generate(prompts, SamplingConfig(temperature=0, max_new_tokens=6, use_cache=False))
    assert torch.equal(a.completion_ids, b.completion_ids)
    plain = completion_logprobs(model, a.prompt_ids, a.prompt_mask, a.completion_ids, a.completion_mask)
    shared = engine.logprobs(a.prompt_ids[::2], a.prompt_mask[::2], a.completion_ids, a.completion_mask,
                             shared_prompt=True)
    shared.sum().backward()  # the prompt's state carries gradients into the completions
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.logprobs, plain, atol=1e-5, rtol=0)
    assert model.model.layers[0].self_attn.q_proj.weight.grad is not None


def test_lean_engine_refuses_length_dependent_rope_and_matches_hf_on_yarn():
    dyn, tok = build(rope_scaling="dynamic-ntk", rope_factor=2.0)
    assert type(dyn).__name__ == "LlamaForCausalLM" and not lean_supported(dyn)
    assert type(get_engine(dyn, tok)) is HFEngine
    yarn, _ = build(max_position_embeddings=4, rope_scaling="yarn", rope_factor=4.0)
    assert lean_supported(yarn.eval())
    prompts = ["1+2=", "100+200="]
    s = SamplingConfig(temperature=0, max_new_tokens=6)
    a, b = HFEngine(yarn, tok).generate(prompts, s), LeanEngine(yarn, tok).generate(prompts, s)
    assert torch.equal(a.completion_ids, b.completion_ids)
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)


def test_grpo_runs_on_a_linear_attention_policy():
    model, tok = build(attention="linear")
    before = [p.detach().clone() for p in model.parameters()]
    t = arithmetic(digits=(1, 2), n_train=16, n_test=4, seed=0)
    task = Task("sevens", t.train, t.test, accuracy=lambda prompts, completions, **_: [
        c[:4].count("7") / 4 for c in completions])
    cfg = GRPOConfig(learning_rate=5e-3, num_generations=4, prompts_per_step=2, max_new_tokens=4, beta=0.04,
                     total_steps=2, eval_rows=2, eval_max_new_tokens=4, progress=False)
    tr = GRPOTrainer(model, tok, task, cfg)
    tr.train()
    assert len(tr.history) == 2 and all(math.isfinite(h["loss"]) and h["kl"] >= 0 for h in tr.history)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_reward_model_and_gradient_checkpointing_on_the_built_in_model(tmp_path):
    model, tok = build(activation="gelu", attention="linear")
    rm = RewardModel.from_causal_lm(model, seed=0, pad_token_id=tok.pad_token_id)
    r = rm.score(tok, ["1+2=", "3+4="], ["3", "7"])
    assert r.shape == (2,) and torch.isfinite(r).all()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    plain, _ = load_model(tmp_path)
    checkpointed, _ = load_model(tmp_path, gradient_checkpointing=True)
    ids, mask, pos = padded_batch()
    losses = []
    for m in (plain.train(), checkpointed.train()):
        loss = m(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits.logsumexp(-1).mean()
        loss.backward()
        losses.append((loss.item(), m.model.layers[0].self_attn.q_proj.weight.grad.clone()))
    assert losses[0][0] == pytest.approx(losses[1][0], abs=1e-6)
    torch.testing.assert_close(losses[0][1], losses[1][1], atol=1e-6, rtol=0)
