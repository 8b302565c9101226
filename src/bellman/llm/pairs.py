"""Preference pairs {"prompt", "chosen", "rejected"} (TRL's preference columns): checks, JSONL files, and
pairs built from the policy's own samples.

Pairs train a reward model (Bradley-Terry: Ouyang et al. 2022, arXiv:2203.02155, sec. 3.5) or the policy
directly (DPO: Rafailov et al. 2023, arXiv:2305.18290). ``sample_preference_pairs`` makes them without
human labels: several completions per prompt from the policy, split by a task reward into the best
(chosen) and lower-rewarded ones (rejected), as Iterative RPO pairs correct against wrong answers (Pang
et al. 2024, "Iterative Reasoning Preference Optimization", arXiv:2404.19733).

Usage::

    from bellman.llm.pairs import load_pairs, sample_preference_pairs
    pairs = sample_preference_pairs(model, tok, task.train[:256], task.rewards, num_generations=8)
    pairs = load_pairs("pairs.jsonl")
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bellman.llm.chat import Prompt, render_prompt, uses_chat
from bellman.llm.engine import get_engine
from bellman.llm.rollout import SamplingConfig
from bellman.llm.tasks import RewardFn, call_reward, columns
from bellman.llm.trainer import plain_prompt


def check_pairs(pairs: list[dict[str, str]], name: str = "preference pairs") -> None:
    """Preference pairs are a non-empty list of dicts with string "prompt", "chosen" and "rejected"."""
    if not isinstance(pairs, list) or not pairs:
        raise ValueError(f"{name} must be a non-empty list of {{'prompt', 'chosen', 'rejected'}} dicts")
    for i, p in enumerate(pairs):
        if not isinstance(p, dict) or not all(isinstance(p.get(k), str) for k in ("prompt", "chosen", "rejected")):
            raise ValueError(f"{name}[{i}] must be a dict with string 'prompt', 'chosen' and 'rejected', got {p!r}")


def load_pairs(path: str | Path) -> list[dict[str, str]]:
    """Preference pairs from a JSONL file with string "prompt", "chosen" and "rejected" columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs file {str(path)!r} does not exist")
    pairs = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                pairs.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not valid JSON ({e.msg})") from None
    check_pairs(pairs, str(path))
    return [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs]


def build_preference_pairs(prompts: list[str], completions: list[str], rewards: list[float],
                           max_pairs_per_prompt: int = 4) -> list[dict[str, str]]:
    """Pair sampled completions of the same prompt: best-rewarded ones (chosen) against lower-rewarded ones.

    For every prompt whose samples do not all share one reward, the distinct completions with the highest
    reward are paired with the distinct completions of lower reward (lowest first), spreading the pairs
    over both sides before repeating one, up to max_pairs_per_prompt.
    Returns dicts with the TRL preference columns "prompt", "chosen", "rejected"; order follows the input.
    """
    if not (len(prompts) == len(completions) == len(rewards)):
        raise ValueError(f"prompts, completions and rewards must have one length, got "
                         f"{len(prompts)}, {len(completions)}, {len(rewards)}")
    if max_pairs_per_prompt < 1:
        raise ValueError(f"max_pairs_per_prompt must be >= 1, got {max_pairs_per_prompt}")
    groups: dict[str, list[tuple[str, float]]] = {}
    for prompt, completion, reward in zip(prompts, completions, rewards):
        if reward != reward:
            raise ValueError(f"reward is NaN for prompt {prompt!r}")
        groups.setdefault(prompt, []).append((completion, float(reward)))
    pairs = []
    for prompt, samples in groups.items():
        best = max(r for _, r in samples)
        chosen = list(dict.fromkeys(c for c, r in samples if r == best))
        lower = sorted({(r, c) for c, r in samples if r < best})
        rejected = list(dict.fromkeys(c for _, c in lower))
        ij = sorted(itertools.product(range(len(chosen)), range(len(rejected))), key=lambda ij: (max(ij), ij))
        pairs.extend({"prompt": prompt, "chosen": chosen[i], "rejected": rejected[j]}
                     for i, j in ij[:max_pairs_per_prompt])
    return pairs


def sample_preference_pairs(model: PreTrainedModel, tok: PreTrainedTokenizerBase, rows: list[dict],
                            reward_fns: list[RewardFn], num_generations: int = 8,
                            sampling: SamplingConfig | None = None, batch_size: int = 64, seed: int = 0,
                            max_pairs_per_prompt: int = 4, prompt_fn: Callable[[dict], Prompt] = plain_prompt,
                            chat_template: bool | None = None) -> list[dict[str, str]]:
    """Pairs from the policy's own samples: num_generations completions per task row (prompt ``prompt_fn``,
    through the chat template as ``chat_template`` says: None = if the tokenizer has one), scored by the
    summed task rewards, correct (best) against wrong (lower) with ``build_preference_pairs``. Each pair's
    prompt is the text the policy read (rendered), as DPO and the reward model then read it."""
    if not rows:
        raise ValueError("rows must be a non-empty list of task rows")
    if num_generations < 2:
        raise ValueError(f"num_generations must be >= 2 to compare samples, got {num_generations}")
    engine, chat = get_engine(model, tok), uses_chat(tok, chat_template)
    expanded = [r for r in rows for _ in range(num_generations)]
    prompts, completions, rewards = [], [], []
    for k in range(0, len(expanded), batch_size):
        chunk = expanded[k:k + batch_size]
        p = [render_prompt(tok, prompt_fn(r), chat) for r in chunk]
        c = engine.generate(p, sampling or SamplingConfig(), seed=seed + k).completions(tok)
        scores = [call_reward(fn, p, c, columns(chunk)) for fn in reward_fns]
        prompts += p
        completions += c
        rewards += [sum(s) for s in zip(*scores)]
    return build_preference_pairs(prompts, completions, rewards, max_pairs_per_prompt)
