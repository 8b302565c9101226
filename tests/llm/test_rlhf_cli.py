"""`bellman llm rm | ppo | dpo`: files written, eval.json keys, pairs from a file or sampled, clear errors."""

import json

import torch
from typer.testing import CliRunner

from bellman.cli import app
from bellman.core import checkpoint
from bellman.llm.reward_model import RewardModel

torch.set_num_threads(1)   # tiny models: one thread is fastest on a shared 2-core machine


def test_cli_rm_ppo_dpo(tmp_path):
    runner = CliRunner(env={"BELLMAN_DEBUG": "1"})  # errors propagate, so their type is checked
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps({"prompt": f"{a}+{a}=", "chosen": str(2 * a), "rejected": str(2 * a + 1)})
                               for a in range(20)))
    rm = tmp_path / "rm"
    r = runner.invoke(app, ["llm", "rm", "--pairs", str(pairs), "--out", str(rm), "--steps", "2", "--batch-size", "4"])
    assert r.exit_code == 0, r.output
    ev = json.loads((rm / "eval.json").read_text())
    assert {"accuracy_before", "accuracy_after"} <= set(ev) and 0 <= ev["accuracy_after"] <= 1
    assert RewardModel.from_pretrained(rm / "model").score  # loadable reward model
    r = runner.invoke(app, ["llm", "ppo", "--reward-model", str(rm / "model"), "--out", str(tmp_path / "ppo"),
                            "--steps", "1", "--batch-size", "4", "--max-new-tokens", "3", "--eval-rows", "4"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "ppo" / "model" / "config.json").exists()
    saved = checkpoint.load(tmp_path / "ppo" / "checkpoint.pt")  # one file: policy, optimiser, critic, moments
    assert {"model", "optimizer", "critic", "reward_moments"} <= set(saved["state"])
    r = runner.invoke(app, ["llm", "dpo", "--out", str(tmp_path / "dpo"), "--steps", "1", "--batch-size", "4",
                            "--pairs", str(pairs), "--eval-rows", "4", "--loss-type", "hinge"])
    assert r.exit_code == 0, r.output
    assert {"accuracy_before", "accuracy_after"} <= set(json.loads((tmp_path / "dpo" / "eval.json").read_text()))
    r = runner.invoke(app, ["llm", "dpo", "--pairs", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x")])
    assert isinstance(r.exception, FileNotFoundError)
    r = runner.invoke(app, ["llm", "dpo", "--pairs", str(pairs), "--out", str(tmp_path / "y"), "--loss-type", "kto"])
    assert isinstance(r.exception, ValueError) and "loss_type" in str(r.exception)
    r = runner.invoke(app, ["llm", "ppo", "--reward-model", str(tmp_path / "nope"), "--out", str(tmp_path / "z")])
    assert isinstance(r.exception, FileNotFoundError)
    # without --pairs, pairs are sampled from the policy: the untrained model never answers right, so its
    # samples all get reward 0 and no pair can be formed
    r = runner.invoke(app, ["llm", "dpo", "--out", str(tmp_path / "w"), "--prompts", "4", "--generations", "2",
                            "--max-new-tokens", "2"])
    assert isinstance(r.exception, ValueError) and "no preference pairs" in str(r.exception)
