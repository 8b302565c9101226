"""The tuned settings of rl-baselines3-zoo (Raffin 2020, https://github.com/DLR-RM/rl-baselines3-zoo), read at
run time from the `rl_zoo3` package's own hyperparams/<algo>.yml files and translated to bellman's config
fields: `zoo_preset(PPOConfig, "Acrobot-v1")`, `PPOConfig.for_env("Acrobot-v1", zoo=True)` or
`bellman train ppo --env Acrobot-v1 --zoo`.

Install the files with the `zoo` extra (`pip install --no-deps rl_zoo3`: its own dependencies are not needed to
read them, and the package is never imported: its folder is found with importlib.util.find_spec).

Translation (SB3 name -> bellman field): the fields of the same name (gamma, batch_size, n_steps, tau, ...);
learning_rate / clip_range "lin_X" -> X with anneal_lr / anneal_clip; normalize -> normalize_obs /
normalize_reward / clip_obs / clip_reward (VecNormalize's norm_obs / norm_reward / clip_obs / clip_reward);
noise_type normal / ornstein-uhlenbeck -> noise;
policy_kwargs net_arch (one list, or pi and vf alike) -> hidden, activation_fn -> activation, log_std_init,
ortho_init;
train_freq (vector steps in SB3) -> train_freq x n_envs env steps; gradient_steps -1 -> as many as env steps;
n_timesteps is returned as the budget; use_sde False and policy MlpPolicy change nothing. A key with no
bellman equivalent (gSDE exploration, env wrappers, ...) is an error naming it, unless
`strict=False`, which drops it and lists it in `ZooPreset.ignored`. MuJoCo -v5 ids use the zoo's -v4 entry
when it has no -v5 one (`ZooPreset.entry` says which).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.util
from pathlib import Path
from typing import Any

ZOO_FILES = {"PPOConfig": "ppo", "A2CConfig": "a2c", "TRPOConfig": "trpo", "DQNConfig": "dqn", "DDPGConfig": "ddpg",
             "TD3Config": "td3", "SACConfig": "sac"}
_SAME_NAME = ("n_envs", "gamma", "batch_size", "buffer_size", "learning_starts", "tau", "target_update_interval",
              "exploration_fraction", "exploration_initial_eps", "exploration_final_eps", "n_steps", "n_epochs",
              "gae_lambda", "vf_coef", "max_grad_norm", "normalize_advantage", "target_kl", "clip_range_vf",
              "noise_std", "policy_delay", "target_policy_noise", "target_noise_clip", "target_entropy")
_NO_OP = {"policy": "MlpPolicy", "use_sde": False}
_ACTIVATIONS = {"nn.ReLU": "relu", "nn.Tanh": "tanh", "nn.ELU": "elu"}
_NOISES = {"normal": "normal", "ornstein-uhlenbeck": "ou"}


@dataclasses.dataclass
class ZooPreset:
    """A zoo entry as bellman config changes: `changes` (for `Config.from_dict`), the zoo's budget
    `n_timesteps`, the keys dropped (strict=False only), the file and entry it came from."""

    changes: dict[str, Any]
    n_timesteps: int | None
    ignored: dict[str, Any]
    source: str
    entry: str


def hyperparams_dir() -> Path:
    """rl_zoo3's hyperparams folder (the package is located, not imported)."""
    spec = importlib.util.find_spec("rl_zoo3")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the zoo preset reads rl-baselines3-zoo's files from the rl_zoo3 package; install "
                                  "it with `pip install --no-deps rl_zoo3` (the `zoo` extra)")
    return Path(list(spec.submodule_search_locations)[0]) / "hyperparams"


def zoo_entries(algo: str) -> dict[str, dict[str, Any]]:
    """Every env entry of hyperparams/<algo>.yml (YAML anchors and merge keys resolved)."""
    import yaml

    path = hyperparams_dir() / f"{algo}.yml"
    if not path.is_file():
        raise FileNotFoundError(f"rl_zoo3 has no {path.name} (looked in {path.parent})")
    return yaml.safe_load(path.read_text())


def zoo_preset(config_class: type, env_id: str, strict: bool = True) -> ZooPreset:
    """The zoo's tuned setting for `env_id` and the algorithm of `config_class`, as bellman config changes."""
    name = config_class.__name__
    if name not in ZOO_FILES:
        raise ValueError(f"rl-baselines3-zoo has no settings for {name}; it has some for "
                         f"{', '.join(sorted(ZOO_FILES))}")
    algo = ZOO_FILES[name]
    entries = zoo_entries(algo)
    entry = env_id
    if entry not in entries and env_id.endswith("-v5") and env_id[:-1] + "4" in entries:
        entry = env_id[:-1] + "4"  # the zoo tunes MuJoCo on -v4; -v5 is the same task with v4's bugs fixed
    if entry not in entries or entry == "default":
        envs = sorted(k for k in entries if k != "default")
        close = difflib.get_close_matches(env_id, envs, n=3)
        raise ValueError(f"rl-baselines3-zoo's {algo}.yml has no entry for {env_id!r}"
                         + (f"; did you mean {', '.join(close)}?" if close else "") + f" (it has {len(envs)} envs)")
    changes, n_timesteps, untranslated = translate(entries[entry], config_class)
    if untranslated and strict:
        said = ", ".join(f"{k}={v!r}" for k, v in untranslated.items())
        raise ValueError(f"rl-baselines3-zoo's {algo}.yml {entry}: {said} has no {name} equivalent; "
                         f"zoo_preset(..., strict=False) drops it")
    return ZooPreset(changes, n_timesteps, untranslated, f"rl_zoo3/hyperparams/{algo}.yml", entry)


def translate(raw: dict[str, Any], config_class: type) -> tuple[dict[str, Any], int | None, dict[str, Any]]:
    """(config changes, n_timesteps, untranslated keys) of one zoo entry (see the module docstring)."""
    fields = set(config_class.keys())
    changes: dict[str, Any] = {}
    untranslated: dict[str, Any] = {}
    n_timesteps = int(float(raw["n_timesteps"])) if "n_timesteps" in raw else None
    n_envs = int(raw.get("n_envs", 1))
    for key, value in raw.items():
        if key == "n_timesteps" or _NO_OP.get(key, object()) == value:
            continue
        if key in _SAME_NAME and key in fields:
            changes[key] = value
        elif key in ("learning_rate", "clip_range") and key in fields:
            anneal = "anneal_lr" if key == "learning_rate" else "anneal_clip"
            if isinstance(value, str) and value.startswith("lin_"):
                if anneal not in fields:
                    untranslated[key] = value
                    continue
                changes[key], changes[anneal] = float(value[4:]), True
            else:
                changes[key] = float(value)
        elif key == "ent_coef" and key in fields:
            changes[key] = str(value) if config_class.annotation(key) is str else float(value)
        elif key == "normalize":
            norm = ast.literal_eval(value) if isinstance(value, str) else {"norm_obs": value, "norm_reward": value}
            changes["normalize_obs"] = bool(norm.get("norm_obs", True))
            changes["normalize_reward"] = bool(norm.get("norm_reward", True))
            changes |= {k: float(norm[k]) for k in ("clip_obs", "clip_reward") if k in norm}
        elif key == "noise_type" and "noise" in fields and value in _NOISES:
            changes["noise"] = _NOISES[value]
        elif key == "train_freq" and key in fields and isinstance(value, int):
            changes[key] = value * n_envs
        elif key == "gradient_steps" and key in fields and isinstance(value, int):
            changes[key] = value if value >= 1 else None  # -1: as many as env steps, set below
        elif key == "policy_kwargs":
            untranslated.update(_policy_kwargs(value, fields, changes))
        else:
            untranslated[key] = value
    if changes.get("gradient_steps", 1) is None:
        changes["gradient_steps"] = changes.get("train_freq", n_envs)
    return changes, n_timesteps, untranslated


def _policy_kwargs(text: str, fields: set[str], changes: dict[str, Any]) -> dict[str, Any]:
    """Translate policy_kwargs (a `dict(...)` expression, parsed, never evaluated) into `changes`; returns
    the entries it could not translate."""
    kwargs = _literal(ast.parse(text.strip(), mode="eval").body)
    untranslated = {}
    for key, value in kwargs.items():
        if key == "net_arch" and isinstance(value, dict) and value.get("pi") == value.get("vf") and len(value) == 2:
            value = value["pi"]
        if key == "net_arch" and isinstance(value, list) and all(isinstance(h, int) for h in value):
            changes["hidden"] = tuple(value)
        elif key == "activation_fn" and value in _ACTIVATIONS:
            changes["activation"] = _ACTIVATIONS[value]
        elif key == "log_std_init" and key in fields:
            changes[key] = float(value)
        elif key == "ortho_init" and key in fields and isinstance(value, bool):
            changes[key] = value
        else:
            untranslated[f"policy_kwargs.{key}"] = value
    return untranslated


def _literal(node: ast.AST) -> Any:
    """The value of a policy_kwargs expression: dict(...) calls, lists, numbers, strings, booleans, and
    dotted names such as nn.ReLU (as text)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {k.arg: _literal(k.value) for k in node.keywords}
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Attribute):
        return f"{_literal(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_literal(node.operand)
    if isinstance(node, ast.Constant):
        return node.value
    return ast.unparse(node)
