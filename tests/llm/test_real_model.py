"""The engines on a real model (SmolLM2-135M-Instruct, float32): the lean forward against transformers' own,
greedy decoding against ``model.generate``, prompt-tree scoring against the plain forward, the sampler's
log-probs against the trainer's, LoRA GRPO, and the fallback for architectures the lean engine does not run."""

import copy

import pytest
import torch

from bellman.llm.batching import encode_prompts, position_ids
from bellman.llm.chat import render_prompt
from bellman.llm.engine import HFEngine, LeanEngine, get_engine
from bellman.llm.engine.lean import lean_forward, lean_supported
from bellman.llm.logprobs import completion_logprobs
from bellman.llm.rollout import SamplingConfig

QUESTIONS = ["What is 16 + 22?", "What is 345 + 78?", "Name a colour.", "What is the capital of France?",
             "Write one word that rhymes with cat.", "What is 9 times 7?", "Say hello in Spanish.",
             "Count from one to five."]


def chat(tok, questions=QUESTIONS):
    return [render_prompt(tok, q, True) for q in questions]


def test_lean_forward_matches_the_hugging_face_forward(smollm2):
    model, tok = smollm2
    ids, mask = encode_prompts(tok, chat(tok))   # left padded, 8 prompts of different lengths
    with torch.no_grad():
        ours = lean_forward(model, ids, mask, position_ids(mask))
        theirs = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits
    assert lean_supported(model) and ours.shape == theirs.shape == (8, ids.shape[1], 49152)
    m = mask.bool()
    assert (ours[m] - theirs[m]).abs().max() < 1e-4


def test_greedy_decoding_matches_model_generate(smollm2):
    model, tok = smollm2
    prompts = chat(tok)
    ro = get_engine(model, tok).generate(prompts, SamplingConfig(temperature=0.0, max_new_tokens=64))
    ids, mask = encode_prompts(tok, prompts)
    with torch.no_grad():
        ref = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=64, do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)[:, ids.shape[1]:]
    for row in range(len(prompts)):
        n = int(ro.completion_mask[row].sum())
        theirs = ref[row].tolist()
        theirs = theirs[:theirs.index(tok.eos_token_id) + 1] if tok.eos_token_id in theirs else theirs
        assert ro.completion_ids[row, :n].tolist() == theirs, row
    assert int(ro.completion_mask.sum(1).max()) > 16   # real replies, not one token each


@pytest.fixture(scope="module")
def sampled(smollm2):
    """Two prompts x 4 completions of up to 24 tokens sampled at temperature 1 by the lean engine."""
    model, tok = smollm2
    prompts = [p for p in chat(tok, QUESTIONS[:2]) for _ in range(4)]
    return LeanEngine(model, tok).generate(prompts, SamplingConfig(temperature=1.0, max_new_tokens=24), seed=0)


def test_prompt_tree_logprobs_equal_the_plain_forward(smollm2, sampled):
    model, tok = smollm2
    ro = sampled
    with torch.no_grad():
        tree = LeanEngine(model, tok).logprobs(ro.prompt_ids[::4], ro.prompt_mask[::4], ro.completion_ids,
                                               ro.completion_mask, shared_prompt=True)
        plain = completion_logprobs(model, ro.prompt_ids, ro.prompt_mask, ro.completion_ids, ro.completion_mask)
    assert (tree - plain).abs().max() < 1e-4 and (plain[ro.completion_mask == 1] < 0).all()


def test_sampler_logprobs_equal_the_trainers_logprob_pass(smollm2, sampled):
    """One engine samples and scores, so the sampler's log-probs are the training pass's (TRL #3867, verl #2953
    are this mismatch between an inference engine and a trainer) up to float32 rounding: decoding runs
    matrix products of other shapes (one query per row, a few rows), which round differently, and over 30
    layers that leaves differences of a few 1e-5 on the least likely tokens (mean a few 1e-6; the Hugging
    Face forward differs from both by as much). GRPO's pi_old is the training pass's own numbers, so this gap
    never reaches the loss (tests/llm/test_grpo.py)."""
    model, tok = smollm2
    ro = sampled
    train = LeanEngine(model, tok).logprobs(ro.prompt_ids[::4], ro.prompt_mask[::4], ro.completion_ids,
                                            ro.completion_mask, shared_prompt=True)   # with autograd, as GRPO
    assert train.requires_grad
    diff = (train.detach() - ro.logprobs).abs()
    assert diff.max() < 1e-4 and diff[ro.completion_mask == 1].mean() < 1e-5


def test_sampler_and_training_pass_are_each_as_close_to_float64_as_the_hugging_face_forward(smollm2, sampled):
    """The few-1e-5 gap between the sampler and the training pass is float32's own accuracy on this model:
    against the same forward in float64, each of them is about as far off as the Hugging Face float32
    forward is, so a tighter agreement between two float32 paths would be agreement in rounding only."""
    model, tok = smollm2
    ro = sampled
    with torch.no_grad():
        exact = completion_logprobs(copy.deepcopy(model).double(), ro.prompt_ids, ro.prompt_mask,
                                    ro.completion_ids, ro.completion_mask)
        hf32 = completion_logprobs(model, ro.prompt_ids, ro.prompt_mask, ro.completion_ids, ro.completion_mask)
        train = LeanEngine(model, tok).logprobs(ro.prompt_ids[::4], ro.prompt_mask[::4], ro.completion_ids,
                                                ro.completion_mask, shared_prompt=True, grad=False)
    m = ro.completion_mask == 1
    error = {name: (x.double() - exact)[m].abs().max().item()
             for name, x in (("hf", hf32), ("sampler", ro.logprobs), ("train", train))}
    assert 0 < error["hf"] < 1e-4, error
    assert error["sampler"] < 2 * error["hf"] and error["train"] < 2 * error["hf"], error


def test_lora_grpo_on_smollm2_trains_only_adapters_and_merges(smollm2, tmp_path):
    from transformers import AutoModelForCausalLM
    from bellman.llm.grpo import GRPOConfig, GRPOTrainer
    from bellman.llm.model import LoraSpec
    from bellman.llm.tasks import arithmetic
    from peft import get_peft_model, LoraConfig
    base, tok = smollm2
    model = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                           task_type="CAUSAL_LM"))
    assert LoraSpec().target_modules == "all-linear"
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = GRPOConfig(out=str(tmp_path / "run"), total_steps=1, learning_rate=1e-3, num_generations=4,
                     prompts_per_step=1, max_new_tokens=8, eval_rows=2, eval_max_new_tokens=8, progress=False)

    def distinct_letters(prompts, completions, **_):  # differs within a group, so the advantages do
        return [float(len(set(c))) for c in completions]

    trainer = GRPOTrainer(model, tok, arithmetic(digits=(2, 2), n_train=8, n_test=2), cfg, rewards=[distinct_letters])
    assert isinstance(trainer.engine, HFEngine) and not isinstance(trainer.engine, LeanEngine)
    trainer.train()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert (tmp_path / "run/model/adapter_config.json").is_file()
    merged = model.merge_and_unload()
    merged.save_pretrained(tmp_path / "merged")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    ids = torch.tensor([tok("What is 16 + 22?")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(plain(ids).logits, merged(ids).logits, atol=1e-5)
        assert not torch.allclose(plain(ids).logits, base(ids).logits, atol=1e-4)


def test_architectures_outside_the_lean_path_fall_back_to_the_hugging_face_forward():
    """A Gemma-style model (scaled embeddings, GELU MLP, soft-capped logits) and a Qwen2 model with sliding-window
    layers run through their own forward: the same numbers as ``completion_logprobs``."""
    from transformers import AutoModelForCausalLM, GemmaConfig, Qwen2Config
    from bellman.llm.tokenizer import char_tokenizer
    tok = char_tokenizer()
    common = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    models = [AutoModelForCausalLM.from_config(GemmaConfig(head_dim=16, **common)),
              AutoModelForCausalLM.from_config(Qwen2Config(use_sliding_window=True, sliding_window=4,
                                                           max_window_layers=1, layer_types=["full_attention",
                                                                                            "sliding_attention"],
                                                           **common))]
    for model in models:
        model.eval()
        assert not lean_supported(model) and type(get_engine(model, tok)) is HFEngine
        with pytest.raises(ValueError, match="the lean engine runs plain Llama / Qwen2 models"):
            get_engine(model, tok, "lean")
        ro = LeanEngine(model, tok).generate(["12+3=", "4+5="] * 2, SamplingConfig(max_new_tokens=6), seed=0)
        with torch.no_grad():
            shared = LeanEngine(model, tok).logprobs(ro.prompt_ids[:2], ro.prompt_mask[:2], ro.completion_ids[[0, 2, 1, 3]],
                                                     ro.completion_mask[[0, 2, 1, 3]], shared_prompt=True)
            plain = completion_logprobs(model, ro.prompt_ids, ro.prompt_mask, ro.completion_ids, ro.completion_mask)
        assert torch.allclose(ro.logprobs, plain, atol=1e-5)
        assert torch.allclose(shared, plain[[0, 2, 1, 3]], atol=1e-5)
