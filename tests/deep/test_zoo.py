"""The zoo preset: rl-baselines3-zoo's own yml entries (from the installed rl_zoo3 package) translated to
bellman's configs, with clear errors for what has no equivalent; `bellman train --zoo`."""

import importlib.util
import json

import pytest
import yaml
from typer.testing import CliRunner

from bellman.cli import app
from bellman.deep import DQNConfig, PPOConfig, SACConfig, TD3Config
from bellman.deep.zoo import hyperparams_dir, translate, zoo_preset

pytestmark = pytest.mark.skipif(importlib.util.find_spec("rl_zoo3") is None,
                                reason="needs the rl_zoo3 package (the zoo extra)")


def entry(algo, env_id):
    return yaml.safe_load((hyperparams_dir() / f"{algo}.yml").read_text())[env_id]


def test_td3_and_sac_pendulum_entries():
    raw = entry("td3", "Pendulum-v1")
    preset = zoo_preset(TD3Config, "Pendulum-v1")
    assert preset.n_timesteps == int(raw["n_timesteps"]) == 20_000 and preset.ignored == {}
    config = TD3Config.for_env("Pendulum-v1", zoo=True)
    assert (config.gamma, config.buffer_size, config.learning_starts) == (raw["gamma"], raw["buffer_size"],
                                                                          raw["learning_starts"])
    assert (config.noise, config.noise_std, config.learning_rate) == ("normal", raw["noise_std"], 1e-3)
    assert config.hidden == (400, 300) and config.policy_delay == 2  # net_arch; SB3's default delay
    sac = SACConfig.for_env("Pendulum-v1", zoo=True)
    assert sac.learning_rate == float(entry("sac", "Pendulum-v1")["learning_rate"]) == 1e-3
    assert sac == SACConfig(learning_rate=1e-3)  # the rest is SB3's defaults, which are SACConfig's


def test_schedules_normalisation_gradient_steps_and_net_arch():
    cartpole = PPOConfig.for_env("CartPole-v1", zoo=True)  # learning_rate lin_0.001, clip_range lin_0.2
    assert (cartpole.learning_rate, cartpole.anneal_lr, cartpole.clip_range, cartpole.anneal_clip) == (1e-3, True,
                                                                                                        0.2, True)
    assert cartpole.n_envs == entry("ppo", "CartPole-v1")["n_envs"] == 8
    acrobot = PPOConfig.for_env("Acrobot-v1", zoo=True)  # normalize: true -> VecNormalize(obs, reward)
    assert acrobot.normalize_obs and acrobot.normalize_reward and acrobot.n_envs == 16
    assert (acrobot.clip_obs, acrobot.clip_reward) == (10.0, 10.0)   # VecNormalize's defaults
    changes, _, _ = translate({"normalize": "{'norm_obs': True, 'norm_reward': False, 'clip_obs': 5.0}"}, PPOConfig)
    assert changes == {"normalize_obs": True, "normalize_reward": False, "clip_obs": 5.0}
    dqn = zoo_preset(DQNConfig, "Acrobot-v1")  # gradient_steps -1: one per env step of the phase
    assert entry("dqn", "Acrobot-v1")["gradient_steps"] == -1 and dqn.changes["gradient_steps"] == 4
    assert dqn.changes["hidden"] == (256, 256) and dqn.n_timesteps == 100_000
    sac = zoo_preset(SACConfig, "LunarLanderContinuous-v3")
    assert sac.changes["learning_rate"] == 7.3e-4 and sac.changes["anneal_lr"] is True
    assert sac.changes["tau"] == 0.01 and sac.changes["hidden"] == (400, 300)


def test_mujoco_v5_reads_the_v4_entry_and_untranslatable_keys_are_errors():
    td3 = zoo_preset(TD3Config, "HalfCheetah-v5")
    assert td3.entry == "HalfCheetah-v4" and td3.changes["learning_starts"] == 10_000
    ppo = zoo_preset(PPOConfig, "HalfCheetah-v5")  # policy_kwargs: log_std_init, ortho_init, activation, net_arch
    assert ppo.changes["log_std_init"] == -2 and ppo.changes["ortho_init"] is False
    assert ppo.changes["activation"] == "relu" and ppo.changes["hidden"] == (256, 256)
    with pytest.raises(ValueError, match=r"ppo.yml MiniGrid-Unlock-v0: env_wrapper=.* has no PPOConfig"):
        zoo_preset(PPOConfig, "MiniGrid-Unlock-v0")
    lenient = zoo_preset(PPOConfig, "MiniGrid-Unlock-v0", strict=False)
    assert lenient.ignored == {"env_wrapper": "minigrid.wrappers.FlatObsWrapper"}
    with pytest.raises(ValueError, match="use_sde=True"):
        PPOConfig.for_env("Pendulum-v1", zoo=True)
    with pytest.raises(ValueError, match="has no entry for 'Pendulum-v9'; did you mean Pendulum-v1"):
        zoo_preset(TD3Config, "Pendulum-v9")
    with pytest.raises(ValueError, match="two different presets"):
        PPOConfig.for_env("CartPole-v1", fast=True, zoo=True)


def test_train_with_the_zoo_preset(tmp_path):
    out = tmp_path / "td3"
    result = CliRunner(env={"BELLMAN_DEBUG": "1"}).invoke(app, [
        "train", "td3", "--env", "Pendulum-v1", "--zoo", "--steps", "300", "--set", "learning_starts=100",
        "--set", "hidden=16", "--out", str(out), "--no-progress", "--episodes", "2"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["gamma"], config["buffer_size"], config["hidden"]) == (0.98, 200_000, [16])
