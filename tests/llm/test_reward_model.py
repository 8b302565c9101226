"""Reward model: Bradley-Terry loss, the last non-pad token, save/load, held-out accuracy rising, bad inputs."""

import math

import pytest
import torch
from transformers import AutoModelForSequenceClassification

torch.set_num_threads(1)   # tiny models: one thread is fastest on a shared 2-core machine

from bellman.llm.model import load_model
from bellman.llm.reward_model import (RewardModel, RewardModelConfig, RewardModelTrainer, bradley_terry_loss,
                                      encode_pairs)


@pytest.fixture(scope="module")
def lm_tok():
    torch.manual_seed(0)
    return load_model("tiny", seed=0)


def test_bradley_terry_loss_by_hand():
    loss = bradley_terry_loss(torch.tensor([1.0, 0.0, -2.0]), torch.tensor([0.0, 0.0, 1.0]))
    expected = (math.log(1 + math.exp(-1.0)) + math.log(2.0) + math.log(1 + math.exp(3.0))) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="shape"):
        bradley_terry_loss(torch.zeros(2), torch.zeros(3))


def test_reward_read_at_last_non_pad_token_any_padding(lm_tok):
    lm, tok = lm_tok
    rm = RewardModel.from_causal_lm(lm, seed=0)
    # the backbone is the LM's, the head is new
    torch.testing.assert_close(rm.model.model.embed_tokens.weight, lm.model.embed_tokens.weight)
    prompts, completions = ["1+2=", "100+200="], ["3", "300"]
    batch = rm.score(tok, prompts, completions)
    for i in range(2):
        ids, mask = encode_pairs(tok, prompts[i:i + 1], completions[i:i + 1])
        alone = rm.token_values(ids, mask)[0, -1]          # unpadded: the last token is the EOS
        assert batch[i].item() == pytest.approx(alone.item(), abs=1e-5)
    # the score depends on the completion
    assert rm.score(tok, ["1+2="], ["4"]).item() != pytest.approx(batch[0].item())


def test_save_pretrained_round_trip(lm_tok, tmp_path):
    lm, tok = lm_tok
    rm = RewardModel.from_causal_lm(lm, seed=1)
    rm.save_pretrained(tmp_path)
    again = RewardModel.from_pretrained(tmp_path)
    torch.testing.assert_close(again.score(tok, ["7+8="], ["15"]), rm.score(tok, ["7+8="], ["15"]))
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path)     # transformers alone loads it
    assert plain.config.num_labels == 1
    with pytest.raises(FileNotFoundError):
        RewardModel.from_pretrained(tmp_path / "missing")


def test_training_raises_held_out_preference_accuracy(lm_tok, tmp_path):
    lm, tok = lm_tok
    # prefer a number over letters; held-out prompts and completions never seen in training
    pairs = [{"prompt": f"{a}+{b}=", "chosen": str(a + b), "rejected": "abcdefghij"[(a * b) % 10] * (1 + a % 2)}
             for a in range(10) for b in range(10)]
    train, held_out = pairs[:60], pairs[60:]
    rm = RewardModel.from_causal_lm(lm, seed=0)
    cfg = RewardModelConfig(out=str(tmp_path), learning_rate=1e-3, total_steps=12, batch_size=8, progress=False)
    result = RewardModelTrainer(rm, tok, train, cfg, eval_pairs=held_out).train()
    assert result["accuracy_after"] >= 0.9 and result["accuracy_after"] > result["accuracy_before"] + 0.2
    assert (tmp_path / "metrics.csv").exists() and (tmp_path / "eval.json").exists()
    assert RewardModel.from_pretrained(tmp_path / "model").score(tok, ["1+1="], ["2"]).shape == (1,)


def test_bad_inputs(lm_tok):
    lm, tok = lm_tok
    rm = RewardModel.from_causal_lm(lm)
    good = [{"prompt": "a", "chosen": "b", "rejected": "c"}] * 4
    with pytest.raises(ValueError, match="non-empty"):
        RewardModelTrainer(rm, tok, [], RewardModelConfig())
    with pytest.raises(ValueError, match="'chosen'"):
        RewardModelTrainer(rm, tok, [{"prompt": "a", "chosen": 1, "rejected": "c"}], RewardModelConfig())
    with pytest.raises(TypeError, match="RewardModel"):
        RewardModelTrainer(lm, tok, good, RewardModelConfig())
    with pytest.raises(TypeError, match="RewardModelConfig"):
        RewardModelTrainer(rm, tok, good, {"learning_rate": 1e-3})
    with pytest.raises(ValueError, match="batch_size"):
        RewardModelConfig(batch_size=0)
    with pytest.raises(TypeError, match="PreTrainedModel"):
        RewardModel.from_causal_lm(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="num_labels"):
        RewardModel(lm)
