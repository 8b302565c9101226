"""The LLM configs: help on every field, checks naming the field, the tiny presets, no torch on import."""

import subprocess
import sys

import pytest

from bellman.llm.config import (DPOConfig, GRPOConfig, PPORLHFConfig, R1ZeroConfig, RewardModelConfig,
                                SamplingConfig, SFTConfig, TrainerConfig)
from bellman.llm.tasks import PLAIN, arithmetic, countdown, countdown_accuracy

CONFIGS = [TrainerConfig, SFTConfig, GRPOConfig, RewardModelConfig, PPORLHFConfig, DPOConfig, SamplingConfig,
           R1ZeroConfig]


@pytest.mark.parametrize("cls", CONFIGS)
def test_every_field_has_help_and_every_preset_builds(cls):
    assert [k for k in cls.keys() if not cls.help(k)] == []
    for name in cls.preset_names():
        cls.preset(name)


def test_tiny_presets_are_the_settings_the_command_line_used_for_the_tiny_model():
    # the values `bellman llm sft | grpo | rm | ppo | dpo` passed before the presets existed
    assert SFTConfig.preset("tiny") == SFTConfig(total_steps=500, learning_rate=1e-3, batch_size=32, eval_rows=200)
    assert GRPOConfig.preset("tiny") == GRPOConfig(
        total_steps=100, learning_rate=1e-4, num_generations=8, prompts_per_step=8, beta=0.04, eps_low=0.2,
        eps_high=0.2, loss_type="grpo", temperature=1.0, max_new_tokens=32, dynamic_sampling=False,
        overlong_buffer=0, eval_rows=200, eval_max_new_tokens=32)
    assert RewardModelConfig.preset("tiny") == RewardModelConfig(total_steps=300, learning_rate=1e-4, batch_size=32,
                                                                 eval_rows=200)
    assert PPORLHFConfig.preset("tiny") == PPORLHFConfig(
        total_steps=40, learning_rate=1e-5, batch_size=64, n_epochs=2, num_mini_batches=2, kl_coef=0.2,
        vf_coef=0.1, temperature=1.0, max_new_tokens=16, ptx_coef=0.0, eval_rows=200, eval_max_new_tokens=16)
    assert DPOConfig.preset("tiny") == DPOConfig(total_steps=100, learning_rate=3e-5, beta=0.1, loss_type="sigmoid",
                                                 batch_size=32, eval_rows=200, eval_max_new_tokens=16)
    assert SamplingConfig.preset("tiny") == SamplingConfig(temperature=1.0, max_new_tokens=16)
    assert GRPOConfig.preset("tiny", seed=3).seed == 3 and GRPOConfig.preset("default") == GRPOConfig()


@pytest.mark.parametrize("cls, changes, message", [
    (TrainerConfig, dict(total_steps=0), r"TrainerConfig.total_steps = 0 is invalid; allowed: an int >= 1"),
    (TrainerConfig, dict(lr_scheduler="step"), r"lr_scheduler = 'step' is invalid; allowed: 'constant', 'linear'"),
    (TrainerConfig, dict(total_steps=5, warmup_steps=6), r"warmup_steps = 6 is invalid; allowed: an int in \[0, "
                                                          r"total_steps = 5\]"),
    (GRPOConfig, dict(num_generations=1), "GRPOConfig.num_generations = 1 is invalid"),
    (GRPOConfig, dict(loss_type="ppo"), "GRPOConfig.loss_type = 'ppo' is invalid; allowed: 'grpo', 'dapo' or"),
    (GRPOConfig, dict(overlong_buffer=64), r"overlong_buffer = 64 is invalid; allowed: an int in \[0, "),
    (PPORLHFConfig, dict(batch_size=8, num_mini_batches=3), "num_mini_batches = 3 is invalid; allowed: an int >= 1 "
                                                            "dividing batch_size = 8"),
    (PPORLHFConfig, dict(clip_range_vf=0.0), "clip_range_vf = 0.0 is invalid; allowed: a float > 0 or None"),
    (DPOConfig, dict(loss_type="kto"), "DPOConfig.loss_type = 'kto' is invalid; allowed: 'sigmoid', 'ipo' or 'hinge'"),
    (SamplingConfig, dict(top_p=0.0), r"SamplingConfig.top_p = 0.0 is invalid; allowed: a float in \(0, 1\]"),
])
def test_checks_name_the_field_its_value_and_what_is_allowed(cls, changes, message):
    with pytest.raises(ValueError, match=message):
        cls(**changes)


def test_types_are_checked():
    with pytest.raises(TypeError, match="GRPOConfig.num_generations must be int, got 2.5"):
        GRPOConfig(num_generations=2.5)
    with pytest.raises(TypeError, match="reward_weights must be a tuple of floats or None"):
        GRPOConfig(reward_weights=("a",))
    assert R1ZeroConfig(grpo={"total_steps": 3}).grpo == GRPOConfig(total_steps=3)


def test_templates_carry_their_accuracy_reward():
    from bellman.llm import r1_zero

    add, count = arithmetic(n_train=4, n_test=2), countdown(n_train=4, n_test=2)
    assert r1_zero.R1_ZERO.accuracy_for(add) is r1_zero.accuracy_reward
    assert r1_zero.R1_ZERO.accuracy_for(count) is countdown_accuracy
    assert PLAIN.accuracy_for(add) is add.accuracy and PLAIN.format_reward is None
    assert r1_zero.R1_ZERO.prompt({"question": "1+2"}) == r1_zero.prompt({"question": "1+2"})


def test_configs_import_without_torch():
    code = "import sys; import bellman.llm.config; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"
