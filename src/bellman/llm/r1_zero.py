"""The R1-Zero template and rewards (DeepSeek-AI 2025, "DeepSeek-R1", arXiv:2501.12948, section 2.2): GRPO
from a base model with rule-based rewards only, no SFT on the template.

- ``TEMPLATE`` (shortened from Table 1 of the R1 paper) names the tags and ends with the opening ``<think>``
  followed by the question, so the model starts reasoning at once and has to discover how to close the tag
  and give the answer;
- rewards: ``format_reward`` (``...</think><answer>...</answer>``, each tag once) plus ``accuracy_reward``
  (the text inside <answer> is the right number), optimised with GRPO (``grpo.py``); ``R1_ZERO`` bundles them
  as a prompt ``Template``.

The whole recipe on the built-in tiny model, its synthetic base corpus included, is ``bellman.recipes.r1_zero``.
"""

from __future__ import annotations

import re

from bellman.llm.tasks import Template, arithmetic_reward, format_reward, question_prompt

TEMPLATE = "Reason in <think> </think>, then answer in <answer> </answer>.\n<think>{question}="


def prompt(row: dict) -> str:
    """The R1-Zero prompt of a task row: the template around its question."""
    return TEMPLATE.format(question=row["question"])


def accuracy_reward(prompts: list[str], completions: list[str], answer: list[str], **_) -> list[float]:
    """1.0 if the completion has an <answer> tag holding the right answer, else 0.0."""
    tagged = arithmetic_reward(prompts, completions, answer)
    return [r if "<answer>" in c else 0.0 for r, c in zip(tagged, completions)]


R1_ZERO = Template("r1", prompt, format_reward, {arithmetic_reward: accuracy_reward})
"""The template with its format reward; answers to arithmetic count only inside the <answer> tag."""

CHAT_INSTRUCTION = ("{question} Think it through inside <think> </think>, then give only the number inside "
                    "<answer> </answer>.")


def chat_prompt(row: dict) -> list[dict[str, str]]:
    """The R1-Zero instruction as a chat model's user message (the question, then the tags to use), and its
    reply opened with ``<think>``, as R1-Zero's prompt opens it."""
    return [{"role": "user", "content": CHAT_INSTRUCTION.format(question=question_prompt(row))},
            {"role": "assistant", "content": "<think>"}]


def cold_start(row: dict) -> str:
    """The reply a cold start fine-tunes on under ``R1_CHAT``, after the opening ``<think>``: the worked sum,
    then the answer tag, "16 + 22 = 38</think> <answer>38</answer>". DeepSeek-R1 (section 2.3.1) starts RL
    from a model fine-tuned on a little such data where the base model does not take to the template."""
    if "answer" not in row:
        raise ValueError("a cold start needs rows with an 'answer' column (the arithmetic task has one)")
    q, a = str(row.get("question", "")), str(row["answer"])
    work = re.sub(r"\s*([+*/-])\s*", r" \1 ", q).strip()
    return f"{work} = {a}</think> <answer>{a}</answer>" if work else f"</think> <answer>{a}</answer>"


R1_CHAT = Template("r1-chat", chat_prompt, format_reward, {arithmetic_reward: accuracy_reward}, cold_start)
"""R1-Zero's tags and rewards for a chat model (rendered with its chat template): the question asked in
words with the tags requested, the reply opened with <think>; ``bellman llm sft --template r1-chat``
fine-tunes on ``cold_start`` replies."""
