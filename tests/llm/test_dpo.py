"""DPO / IPO / hinge losses against their formulas, and preference pairs from sampled completions."""

import math
from functools import partial

import pytest
import torch

from bellman.llm.dpo import dpo_loss
from bellman.llm.pairs import build_preference_pairs

torch.set_num_threads(1)   # tiny models: one thread is fastest on a shared 2-core machine

# Hand-made sequence log-probs: policy and reference, chosen (w) and rejected (l).
LOGP_W = torch.tensor([-4.0, -10.0])
LOGP_L = torch.tensor([-6.0, -9.0])
REF_W = torch.tensor([-5.0, -9.5])
REF_L = torch.tensor([-5.5, -9.0])
# h = (logp_w - ref_w) - (logp_l - ref_l): pair 0: 1.0 - (-0.5) = 1.5; pair 1: -0.5 - 0.0 = -0.5


@pytest.mark.parametrize("loss_type, expected", [
    ("sigmoid", [-math.log(1 / (1 + math.exp(-0.5 * 1.5))), -math.log(1 / (1 + math.exp(-0.5 * -0.5)))]),
    ("ipo", [(1.5 - 1.0) ** 2, (-0.5 - 1.0) ** 2]),
    ("hinge", [max(0.0, 1 - 0.5 * 1.5), max(0.0, 1 - 0.5 * -0.5)]),
])
def test_losses_match_formulas(loss_type, expected):
    losses, chosen, rejected = dpo_loss(LOGP_W, LOGP_L, REF_W, REF_L, beta=0.5, loss_type=loss_type)
    torch.testing.assert_close(losses, torch.tensor(expected))
    torch.testing.assert_close(chosen, torch.tensor([0.5, -0.25]))      # beta (logp_w - ref_w)
    torch.testing.assert_close(rejected, torch.tensor([-0.25, 0.0]))    # beta (logp_l - ref_l)
    assert (chosen > rejected).tolist() == [True, False]                # preference accuracy 1/2


def test_hinge_is_zero_past_margin_and_sigmoid_gradient_sign():
    logp_w = torch.tensor([0.0], requires_grad=True)
    losses, _, _ = dpo_loss(logp_w, torch.tensor([-30.0]), torch.tensor([0.0]), torch.tensor([0.0]),
                            beta=0.1, loss_type="hinge")
    assert losses.item() == 0.0                                          # beta h = 3 > 1
    losses, _, _ = dpo_loss(logp_w, torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0]), beta=0.1)
    losses.sum().backward()
    assert logp_w.grad.item() == pytest.approx(-0.1 * 0.5)               # d/dx -log sig(beta x) at 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(LOGP_W, LOGP_L, REF_W, REF_L, loss_type="kto")
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(LOGP_W, LOGP_L, REF_W, REF_L, beta=0.0)
    with pytest.raises(ValueError, match="shape"):
        dpo_loss(LOGP_W, LOGP_L[:1], REF_W, REF_L)
    with pytest.raises(TypeError):
        dpo_loss([1.0], LOGP_L, REF_W, REF_L)


def test_preference_pairs_from_samples():
    prompts = ["a", "a", "a", "a", "b", "b", "c", "c"]
    completions = ["1", "2", "2", "3", "x", "y", "p", "q"]
    rewards = [1.0, 0.1, 0.1, 0.0, 0.5, 0.5, 0.0, 1.0]
    pairs = build_preference_pairs(prompts, completions, rewards)
    # "a": chosen "1" against the distinct lower ones, lowest reward first; "b" all equal: no pair.
    assert pairs == [{"prompt": "a", "chosen": "1", "rejected": "3"},
                     {"prompt": "a", "chosen": "1", "rejected": "2"},
                     {"prompt": "c", "chosen": "q", "rejected": "p"}]
    assert len(build_preference_pairs(prompts, completions, rewards, max_pairs_per_prompt=1)) == 2
    with pytest.raises(ValueError, match="one length"):
        build_preference_pairs(prompts, completions[:-1], rewards)
    with pytest.raises(ValueError, match="NaN"):
        build_preference_pairs(["a"], ["1"], [float("nan")])


# ---- the trainer on the built-in tiny model ---------------------------------------------------------------

from bellman.llm.batching import encode_completions, encode_prompts  # noqa: E402
from bellman.llm.dpo import DPOConfig, DPOTrainer  # noqa: E402
from bellman.llm.engine import HFEngine, LeanEngine  # noqa: E402
from bellman.llm.logprobs import completion_logprobs  # noqa: E402
from bellman.llm.model import load_model  # noqa: E402
from bellman.llm.pairs import sample_preference_pairs  # noqa: E402
from bellman.llm.rollout import SamplingConfig  # noqa: E402
from bellman.llm.tasks import Task, arithmetic_reward  # noqa: E402


def seven_task() -> Task:
    """A task whose every answer is "7": easy to learn, so a few updates must move held-out accuracy."""
    rows = [{"prompt": f"{i}?", "question": str(i), "answer": "7"} for i in range(40)]
    return Task("seven", train=rows[:32], test=rows[32:], accuracy=arithmetic_reward)


def seven_pairs(rows):
    return [{"prompt": r["prompt"], "chosen": "7", "rejected": str(i % 7) * (1 + i % 2)} for i, r in enumerate(rows)]


@pytest.mark.parametrize("share_prompt", [True, False])
def test_only_completion_tokens_count(share_prompt):
    model, tok = load_model("tiny", seed=0)
    pairs = [{"prompt": "1+2=", "chosen": "3", "rejected": "12345"}, {"prompt": "10+20=", "chosen": "30", "rejected": "4"}]
    trainer = DPOTrainer(model, tok, seven_task(), DPOConfig(progress=False, share_prompt=share_prompt), pairs)
    batch = trainer.collate([0, 1])
    logp_w, logp_l = trainer.sequence_logprobs(trainer.engine.logprobs(*batch, shared_prompt=share_prompt), batch[3])
    for i, p in enumerate(pairs):
        for side, got in (("chosen", logp_w[i]), ("rejected", logp_l[i])):
            alone = completion_logprobs(model, *encode_prompts(tok, [p["prompt"]]), *encode_completions(tok, [p[side]]))
            assert got.item() == pytest.approx(alone.sum().item(), abs=1e-4)


@pytest.mark.parametrize("lean", [True, False])
def test_shared_prompt_gradients_equal_repeated_prompts(lean):
    model, tok = load_model("tiny", seed=0)
    # without lean: the Hugging Face forward with its DynamicCache, as for models outside the lean path
    engine = LeanEngine(model, tok) if lean else HFEngine(model, tok)
    p_ids, p_mask = encode_prompts(tok, ["1+2=", "100+20="])
    c_ids, c_mask = encode_completions(tok, ["3", "120", "4", ""])  # lengths 2, 4, 2 and 1 (EOS alone)
    results = []
    runs = ((partial(engine.logprobs, shared_prompt=True), (p_ids, p_mask)),
            (partial(completion_logprobs, model), (p_ids.repeat_interleave(2, 0), p_mask.repeat_interleave(2, 0))))
    for fn, p in runs:
        model.zero_grad()
        logp = fn(*p, c_ids, c_mask, temperature=0.7)
        logp.sum().backward()
        results.append((logp.detach(), {n: q.grad.clone() for n, q in model.named_parameters()}))
    (shared, shared_grads), (plain, plain_grads) = results
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=1e-5)
    assert shared_grads.keys() == plain_grads.keys()
    for name, g in plain_grads.items():
        torch.testing.assert_close(shared_grads[name], g, atol=1e-5, rtol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("loss_type, lr", [("sigmoid", 1e-3), ("ipo", 3e-4), ("hinge", 1e-3)])
def test_dpo_run_raises_held_out_accuracy(loss_type, lr):
    model, tok = load_model("tiny", seed=0)
    task = seven_task()
    cfg = DPOConfig(learning_rate=lr, beta=0.1, loss_type=loss_type, batch_size=16, total_steps=20,
                    eval_max_new_tokens=4, progress=False, seed=0)
    trainer = DPOTrainer(model, tok, task, cfg, seven_pairs(task.train))
    result = trainer.train()
    assert result["accuracy_before"] == 0.0 and result["accuracy_after"] >= 0.75
    last = trainer.history[-1]
    assert last["margin"] > 0 and last["pref_accuracy"] == 1.0 and last["rewards_chosen"] > last["rewards_rejected"]


def test_sample_preference_pairs_prefer_higher_reward():
    model, tok = load_model("tiny", seed=0)
    rows = seven_task().train[:4]

    def length_reward(prompts, completions, **_):
        return [float(len(c)) for c in completions]

    sampling = SamplingConfig(temperature=1.0, max_new_tokens=6)
    pairs = sample_preference_pairs(model, tok, rows, [length_reward], num_generations=4, sampling=sampling, seed=3)
    assert pairs and all(len(p["chosen"]) > len(p["rejected"]) for p in pairs)
    assert pairs == sample_preference_pairs(model, tok, rows, [length_reward], 4, sampling, seed=3)   # seeded
    with pytest.raises(ValueError, match="num_generations"):
        sample_preference_pairs(model, tok, rows, [length_reward], num_generations=1)


def test_trainer_bad_inputs():
    model, tok = load_model("tiny", seed=0)
    with pytest.raises(ValueError, match="loss_type"):
        DPOConfig(loss_type="kto")
    with pytest.raises(ValueError, match="beta"):
        DPOConfig(beta=-1.0)
    with pytest.raises(ValueError, match="non-empty"):
        DPOTrainer(model, tok, seven_task(), DPOConfig(), [])
    with pytest.raises(TypeError, match="DPOConfig"):
        DPOTrainer(model, tok, seven_task(), object(), seven_pairs(seven_task().train))
