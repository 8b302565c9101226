"""Engines: HFEngine and LeanEngine give the same completions and log-probs; get_engine's choice; the trainers
sample and score through their engine; the frozen reference of a LoRA policy is its base model."""

import copy

import pytest
import torch
import torch.nn.functional as F

from bellman.llm.engine import Engine, HFEngine, LeanEngine, get_engine
from bellman.llm.engine.lean import Proj, lean_weights, linear
from bellman.llm.grpo import GRPOConfig, GRPOTrainer
from bellman.llm.logprobs import completion_logprobs
from bellman.llm.model import LoraSpec, TinyConfig, load_model, tiny_model
from bellman.llm.reference import frozen_reference, reference_logprobs
from bellman.llm.rollout import SamplingConfig
from bellman.llm.tasks import arithmetic

torch.set_num_threads(1)
SMALL = TinyConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


@pytest.fixture(scope="module")
def tiny():
    model, tok = tiny_model(SMALL, seed=0)
    return model.eval(), tok


def test_hf_and_lean_engines_give_the_same_greedy_completions_and_logprobs():
    model, tok = load_model("tiny", seed=0)
    model.eval()
    hf, lean = HFEngine(model, tok), LeanEngine(model, tok)
    prompts = [q for q in ("1+2=", "100+200=", "hello world") for _ in range(2)]
    s = SamplingConfig(temperature=0, max_new_tokens=12)
    a, b = hf.generate(prompts, s), lean.generate(prompts, s)
    assert torch.equal(a.completion_ids, b.completion_ids) and torch.equal(a.completion_mask, b.completion_mask)
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)
    per_row = (a.prompt_ids, a.prompt_mask, a.completion_ids, a.completion_mask)
    per_group = (a.prompt_ids[::2], a.prompt_mask[::2], a.completion_ids, a.completion_mask)
    reference = completion_logprobs(model, *per_row, temperature=0.7)
    for engine in (hf, lean):
        for batch, shared in ((per_row, False), (per_group, True)):
            for grad in (True, False):
                logp = engine.logprobs(*batch, temperature=0.7, shared_prompt=shared, grad=grad)
                assert logp.dtype == torch.float32 and logp.requires_grad == grad
                torch.testing.assert_close(logp, reference, atol=1e-5, rtol=0)
    # sampled with one seed, both engines draw the same tokens
    s = SamplingConfig(temperature=1.0, max_new_tokens=12)
    assert torch.equal(hf.generate(prompts, s, seed=4).completion_ids, lean.generate(prompts, s, seed=4).completion_ids)


def test_decodings_transposed_weights_give_the_linear_maps_numbers(tiny):
    """lean_weights(decoding=True) keeps W^T copies only outside autograd; ``linear`` uses a copy for the rows
    in its range and gives F.linear's numbers either way."""
    model, _ = tiny
    with torch.inference_mode():
        w = lean_weights(model, decoding=True)
    assert all(torch.equal(p.transposed, p.weight.t()) for p in (*w.layers[0][:7], w.head))
    assert w.head.rows == (4, 32) and w.layers[0][0].rows[0] == 4
    assert all(p.transposed is None for p in (*lean_weights(model, decoding=True).layers[0][:7],
                                               lean_weights(model).head))
    g = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(48, 32, generator=g), torch.randn(48, generator=g)
    p = Proj(weight, bias, weight.t().contiguous(), (4, 32))
    for rows in (1, 3, 4, 31, 32, 40):
        x = torch.randn(rows, 32, generator=g)
        torch.testing.assert_close(linear(x, p), F.linear(x, weight, bias), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(linear(x[None], p), F.linear(x, weight, bias)[None], atol=1e-5, rtol=1e-5)


def test_get_engine_picks_lean_where_supported_and_falls_back_to_hf():
    model, tok = load_model("tiny", seed=0)
    assert type(get_engine(model, tok)) is LeanEngine and type(get_engine(model, tok, "hf")) is HFEngine
    for unsupported in (load_model("tiny", lora=LoraSpec(r=2))[0], load_model("tiny", gradient_checkpointing=True)[0]):
        assert type(get_engine(unsupported, tok)) is HFEngine
        with pytest.raises(ValueError, match="lean engine runs plain Llama / Qwen2"):
            get_engine(unsupported, tok, "lean")
    with pytest.raises(ValueError, match="engine must be one of"):
        get_engine(model, tok, "vllm")


def test_logprobs_batch_errors(tiny):
    model, tok = tiny
    ro = HFEngine(model, tok).generate(["1+2=", "7", "12+3="], SamplingConfig(temperature=0, max_new_tokens=3))
    for engine in (HFEngine(model, tok), LeanEngine(model, tok)):
        with pytest.raises(ValueError, match="do not split evenly"):
            engine.logprobs(ro.prompt_ids[:2], ro.prompt_mask[:2], ro.completion_ids, ro.completion_mask,
                            shared_prompt=True)
        with pytest.raises(ValueError, match="one prompt per completion"):
            engine.logprobs(ro.prompt_ids[:1], ro.prompt_mask[:1], ro.completion_ids, ro.completion_mask)
        with pytest.raises(ValueError, match="temperature"):
            engine.logprobs(*(ro.prompt_ids, ro.prompt_mask, ro.completion_ids, ro.completion_mask), temperature=0)


def test_the_reference_of_a_lora_policy_is_its_base_model(tiny):
    base, tok = tiny
    from peft import LoraConfig, get_peft_model
    policy = get_peft_model(copy.deepcopy(base), LoraConfig(r=2, target_modules="all-linear"))
    with torch.no_grad():  # adapters that change the outputs
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    engine = get_engine(policy, tok)
    assert frozen_reference(engine, None) is None
    ro = engine.generate(["1+2=", "hello"], SamplingConfig(max_new_tokens=6), seed=0)
    batch = (ro.prompt_ids, ro.prompt_mask, ro.completion_ids, ro.completion_mask)
    ref = reference_logprobs(engine, None, *batch)
    torch.testing.assert_close(ref, completion_logprobs(base, *batch), atol=1e-5, rtol=0)
    assert not torch.allclose(engine.logprobs(*batch, grad=False), ref, atol=1e-3)
    copied = frozen_reference(get_engine(base, tok), None)  # no adapters: a frozen copy of the model
    assert copied.model is not base and not any(p.requires_grad for p in copied.model.parameters())


class Recording(Engine):
    """An engine that delegates to another and records which of its methods the trainer called."""

    def __init__(self, inner: Engine) -> None:
        self.inner, self.model, self.tok, self.calls = inner, inner.model, inner.tok, []

    def generate(self, prompts, sampling=None, seed=None):
        self.calls.append("generate")
        return self.inner.generate(prompts, sampling, seed)

    def logprobs(self, *batch, temperature=1.0, shared_prompt=False, grad=True):
        self.calls.append("logprobs")
        return self.inner.logprobs(*batch, temperature=temperature, shared_prompt=shared_prompt, grad=grad)


def test_trainers_sample_evaluate_and_score_through_their_engine():
    model, tok = tiny_model(SMALL, seed=0)
    task = arithmetic(digits=(1, 1), n_train=8, n_test=2, seed=0)
    cfg = GRPOConfig(learning_rate=1e-3, num_generations=2, prompts_per_step=2, max_new_tokens=3, beta=0.0,
                     total_steps=1, eval_rows=2, eval_max_new_tokens=2, progress=False)
    trainer = GRPOTrainer(model, tok, task, cfg)
    assert type(trainer.engine) is LeanEngine
    trainer.engine = Recording(HFEngine(model, tok))
    trainer.train()
    # greedy evaluation before, the group samples, the policy's log-probs, greedy evaluation after
    assert trainer.engine.calls == ["generate", "generate", "logprobs", "generate"]
