"""SFT (loss on completion tokens only), the R1-Zero pieces and the `bellman llm` command line."""

import json
import math
import random
import re

import pytest
import torch
from typer.testing import CliRunner

from bellman.cli import app
from bellman.llm.engine import LeanEngine
from bellman.llm.model import TinyConfig, tiny_model
from bellman.llm.r1_zero import TEMPLATE, accuracy_reward, prompt
from bellman.recipes.r1_zero import FILLED_FORMS, base_corpus, worked_sum
from bellman.llm.sft import SFTConfig, SFTTrainer, best_fit_decreasing, packed_sft_loss, sft_loss
from bellman.llm.tasks import Task, arithmetic, arithmetic_reward, format_reward

torch.set_num_threads(1)
SMALL = TinyConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


def test_sft_loss_is_cross_entropy_on_completion_tokens_only():
    model, tok = tiny_model(SMALL, seed=0)
    prompts, completions = ["12+3=", "1+1="], ["15", "2"]
    loss = sft_loss(LeanEngine(model, tok), prompts, completions)
    nll, n = 0.0, 0
    for p, c in zip(prompts, completions):
        ids = tok(p + c, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        logits = model(torch.tensor([ids])).logits[0]
        k = len(c) + 1  # completion tokens + EOS carry the loss; prompt tokens do not
        targets = torch.tensor(ids[-k:])
        nll += torch.nn.functional.cross_entropy(logits[-k - 1:-1], targets, reduction="sum")
        n += k
    assert loss.item() == pytest.approx((nll / n).item(), rel=1e-5)


def test_best_fit_decreasing_fills_rows_without_overflow():
    lengths = [5, 3, 7, 2, 4, 1, 6]
    rows = best_fit_decreasing(lengths, 7)
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in r) <= 7 for r in rows) and len(rows) == 4  # 28 tokens in 4 rows of 7
    with pytest.raises(ValueError, match="does not fit"):
        best_fit_decreasing([8], 7)


def test_packed_sft_loss_equals_padded_loss_and_its_gradient():
    model, tok = tiny_model(SMALL, seed=0)
    prompts, completions = ["12+3=", "1+1=", "100+200=", "5+5="], ["15", "2", "300 and more", "10"]
    engine = LeanEngine(model, tok)
    padded = sft_loss(engine, prompts, completions)
    padded.backward()
    g_padded = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    packed = packed_sft_loss(engine, prompts, completions)
    packed.backward()
    assert packed.item() == pytest.approx(padded.item(), rel=1e-5)
    for g, p in zip(g_padded, model.parameters()):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)


def test_sft_learns_a_copy_task():
    rows = [{"prompt": f"{d}=", "question": str(d), "answer": str(d)} for d in range(10)]
    task = Task("copy", rows, rows, accuracy=arithmetic_reward)
    model, tok = tiny_model(SMALL, seed=0)
    cfg = SFTConfig(learning_rate=1e-2, batch_size=10, total_steps=60, eval_max_new_tokens=3, progress=False)
    result = SFTTrainer(model, tok, task, cfg).train()
    assert result["accuracy_before"] <= 0.2 and result["accuracy_after"] == 1.0


def test_learning_rate_schedules_warm_up_then_decay_to_zero():
    model, tok = tiny_model(SMALL, seed=0)
    task = arithmetic(n_train=20, n_test=2)
    lrs = {}
    for name in ("constant", "linear", "cosine"):
        cfg = SFTConfig(learning_rate=1e-2, total_steps=10, warmup_steps=2, lr_scheduler=name, batch_size=4,
                        eval_rows=1, eval_max_new_tokens=1, progress=False)
        trainer = SFTTrainer(model, tok, task, cfg)
        lrs[name] = []
        for step in range(10):
            trainer.train_step(step)
            lrs[name].append(trainer.optimizer.param_groups[0]["lr"])
    assert lrs["constant"] == pytest.approx([0.0, 5e-3] + [1e-2] * 8)
    assert lrs["linear"] == pytest.approx([0.0, 5e-3] + [1e-2 * (10 - s) / 8 for s in range(2, 10)])
    assert lrs["cosine"] == pytest.approx([0.0, 5e-3] + [5e-3 * (1 + math.cos(math.pi * (s - 2) / 8)) for s in range(2, 10)])
    with pytest.raises(ValueError, match="lr_scheduler"):
        SFTConfig(lr_scheduler="step")
    with pytest.raises(ValueError, match="warmup_steps"):
        SFTConfig(total_steps=5, warmup_steps=6)


def test_sft_input_errors():
    model, tok = tiny_model(SMALL, seed=0)
    task = arithmetic(n_train=10, n_test=2)
    with pytest.raises(ValueError, match="non-empty"):
        SFTTrainer(model, tok, task, SFTConfig(), rows=[])
    with pytest.raises(ValueError, match="'prompt' and 'completion'"):
        SFTTrainer(model, tok, task, SFTConfig(), rows=[{"prompt": "x"}])
    with pytest.raises(ValueError, match="batch_size"):
        SFTConfig(batch_size=0)


def test_worked_sum_is_correct_column_addition():
    rng = random.Random(0)
    assert worked_sum("736+37") == "6+7+0=13 A3,3+3+1=7 A73,7+0+0=7 A773"
    for _ in range(200):
        a, b = rng.randint(10, 999), rng.randint(10, 999)
        assert worked_sum(f"{a}+{b}").rsplit("A", 1)[1] == str(a + b)


def test_r1_zero_template_rewards_and_base_corpus():
    p = prompt({"question": "12+34"})
    assert "<answer> </answer>" in p and p.endswith("<think>12+34=")
    comps = ["4+2=6</think><answer>46</answer>", "46", "x</think><answer>45</answer>"]
    assert accuracy_reward([p] * 3, comps, answer=["46"] * 3) == [1.0, 0.0, 0.0]
    assert format_reward([p] * 3, comps) == [1.0, 0.0, 1.0]
    corpus = base_corpus(arithmetic(n_train=50, n_test=5), n_generic=200)
    text = " ".join(r["prompt"] + r["completion"] for r in corpus)
    assert "</" in text and not any(t in text for t in ("<think>", "</think>", "<answer>", "</answer>", TEMPLATE.split("\n")[0]))


def test_base_corpus_forms_give_the_right_result_mostly_outside_a_tag():
    corpus = base_corpus(arithmetic(n_train=10, n_test=2), n_generic=3000)
    form = re.compile(r"\n<(\w+)>(\d+)\+(\d+)=[^<]*</\1>(?:<(\w+)>(\d+)</\4>| (\d+))$")
    forms = [m for r in corpus if (m := form.search(r["completion"]))]
    assert len(forms) > 1000
    assert all(int(m[5] or m[6]) == int(m[2]) + int(m[3]) for m in forms)
    filled = sum(m[5] is not None for m in forms) / len(forms)
    assert abs(filled - FILLED_FORMS) < 0.05


def test_cli_sft_then_eval_and_errors(tmp_path):
    runner = CliRunner(env={"BELLMAN_DEBUG": "1"})  # errors propagate, so their type is checked
    out = tmp_path / "sft"
    r = runner.invoke(app, ["llm", "sft", "--out", str(out), "--steps", "2", "--eval-rows", "4", "--batch-size", "4"])
    assert r.exit_code == 0, r.output
    ev = json.loads((out / "eval.json").read_text())
    assert {"accuracy_before", "accuracy_after"} <= set(ev) and 0 <= ev["accuracy_after"] <= 1
    assert (out / "metrics.csv").exists() and (out / "model" / "config.json").exists()
    r = runner.invoke(app, ["llm", "eval", "--model", str(out / "model"), "--out", str(tmp_path / "ev"),
                            "--rows", "4", "--template", "r1", "--max-new-tokens", "4"])
    assert r.exit_code == 0, r.output
    assert set(json.loads((tmp_path / "ev" / "eval.json").read_text())) == {"accuracy", "format"}
    r = runner.invoke(app, ["llm", "grpo", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "g")])
    assert isinstance(r.exception, FileNotFoundError)
    r = runner.invoke(app, ["llm", "sft", "--task", "chess", "--out", str(tmp_path / "c"), "--steps", "1"])
    assert isinstance(r.exception, ValueError) and "unknown task" in str(r.exception)
    r = runner.invoke(app, ["llm", "eval", "--rows", "-5", "--out", str(tmp_path / "ev2")])
    assert isinstance(r.exception, ValueError) and "--rows must be a positive integer, got -5" in str(r.exception)
    r = runner.invoke(app, ["llm", "eval", "--model", str(out / "model"), "--out", str(tmp_path / "ev3"), "--rows", "4",
                            "--max-new-tokens", "4", "--rope-scaling", "dynamic-ntk", "--rope-factor", "2"])
    assert r.exit_code == 0, r.output
    assert set(json.loads((tmp_path / "ev3" / "eval.json").read_text())) == {"accuracy"}
    r = runner.invoke(app, ["llm", "eval", "--out", str(tmp_path / "ev4"), "--rope-scaling", "yarn", "--rope-factor", "0.5"])
    assert isinstance(r.exception, ValueError) and "factor must be a number >= 1" in str(r.exception)


def test_cli_grpo_add_reward(tmp_path):
    """--add-reward puts a built-in reward beside the template's: GRPO logs it and sums it into the reward."""
    import csv
    runner = CliRunner(env={"BELLMAN_DEBUG": "1"})
    out = tmp_path / "g"
    r = runner.invoke(app, ["llm", "grpo", "--out", str(out), "--template", "r1", "--add-reward", "tag_count",
                            "--steps", "1", "--eval-rows", "2", "--prompts-per-step", "2", "--generations", "2",
                            "--max-new-tokens", "8"])
    assert r.exit_code == 0, r.output
    row = next(csv.DictReader((out / "metrics.csv").open()))
    parts = [float(row[f"reward_{k}_reward"]) for k in ("tag_count", "format", "accuracy")]
    assert float(row["reward"]) == pytest.approx(sum(parts)) and parts[0] * 8 == round(parts[0] * 8)   # quarters, 2 completions
    r = runner.invoke(app, ["llm", "grpo", "--out", str(tmp_path / "h"), "--add-reward", "length"])
    assert isinstance(r.exception, ValueError) and "--add-reward must be one of tag_count, format, got length" \
        in str(r.exception)


def test_r1_chat_cold_start_replies_have_the_format_and_train_sft():
    """The r1-chat template's SFT reply: the worked sum, then the tags, exactly what its rewards ask for."""
    from bellman.llm.r1_zero import R1_CHAT, cold_start
    from bellman.llm.tasks import has_format
    row = {"prompt": "16+22=", "question": "16+22", "answer": "38"}
    reply = cold_start(row)
    assert reply == "16 + 22 = 38</think> <answer>38</answer>" and R1_CHAT.completion is cold_start
    assert has_format(reply) and format_reward([""], [reply]) == [1.0]
    assert accuracy_reward([""], [reply], answer=["38"]) == [1.0]
    assert accuracy_reward([""], [cold_start({**row, "answer": "39"})], answer=["38"]) == [0.0]
    with pytest.raises(ValueError, match="'answer' column"):
        cold_start({"prompt": "x", "question": "x"})
    model, tok = tiny_model(SMALL, seed=0)
    task = arithmetic(n_train=10, n_test=2)
    sft = SFTTrainer(model, tok, task, SFTConfig(), prompt_fn=lambda r: r["prompt"], completion_fn=cold_start)
    assert [r["completion"] for r in sft.rows] == [cold_start(r) for r in task.train]
    assert [r["completion"] for r in SFTTrainer(model, tok, task, SFTConfig()).rows] == \
        [r["answer"] for r in task.train]
