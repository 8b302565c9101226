"""Chat prompts: a task's prompt rendered with the tokenizer's chat template, as a chat model was tuned to read.

Usage::

    from bellman.llm.chat import render_prompt, uses_chat
    chat = uses_chat(tok, None)                              # None: on when the tokenizer has a chat template
    render_prompt(tok, "What is 16 + 22?", chat)             # '<|im_start|>system ... <|im_start|>assistant\\n'
    render_prompt(tok, [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "What is 16 + 22?"}], chat)

A prompt is a string (rendered as one user message) or a list of ``{"role", "content"}`` messages, TRL's
conversational format; either way the text ends with the template's generation prompt
(``apply_chat_template(..., add_generation_prompt=True)``), so the completion is the assistant's reply.
Without a chat template (or with the switch off) a string prompt is the text itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Prompt = str | list[dict[str, str]]


def has_chat_template(tok: PreTrainedTokenizerBase) -> bool:
    """True if the tokenizer carries a chat template."""
    return bool(getattr(tok, "chat_template", None))


def uses_chat(tok: PreTrainedTokenizerBase, chat_template: bool | None) -> bool:
    """Whether prompts are rendered with the chat template: ``chat_template`` None means "if the tokenizer
    has one"; True insists on it; False turns it off."""
    if chat_template not in (None, True, False):
        raise ValueError(f"chat_template must be True, False or None (auto), got {chat_template!r}")
    if chat_template is None:
        return has_chat_template(tok)
    if chat_template and not has_chat_template(tok):
        raise ValueError("chat_template=True but the tokenizer has no chat template; use None (auto) or False")
    return chat_template


def is_messages(prompt: object) -> bool:
    """True for a conversational prompt: a non-empty list of dicts with string "role" and "content"."""
    return isinstance(prompt, list) and bool(prompt) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt)


def check_messages(prompt: object) -> list[dict[str, str]]:
    """``prompt`` if ``is_messages``, else a clear error."""
    if not is_messages(prompt):
        raise ValueError(f"a prompt must be a string or a non-empty list of {{'role': str, 'content': str}} "
                         f"messages, got {str(prompt)[:200]}")
    return prompt


def render_prompt(tok: PreTrainedTokenizerBase, prompt: Prompt, chat: bool) -> str:
    """The text of ``prompt`` the model reads: through the chat template with the generation prompt when
    ``chat``, else the string itself (a list of messages then is an error). Messages that end with an
    assistant message are rendered with that reply open, for the model to continue."""
    if isinstance(prompt, str) and not chat:
        return prompt
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else check_messages(prompt)
    if not chat:
        raise ValueError("a prompt given as chat messages needs a tokenizer with a chat template (and "
                         "chat_template not False)")
    try:
        # a final assistant message is the start of the reply, continued by the model (as in TRL)
        reply_started = messages[-1]["role"] == "assistant"
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=not reply_started,
                                       continue_final_message=reply_started)
    except Exception as e:  # a template is a user-supplied Jinja program: any error it raises is its own
        raise ValueError(f"the tokenizer's chat template failed on {str(messages)[:200]}: {type(e).__name__}: "
                         f"{e}; fix the template, or set chat_template=False to use plain prompts") from None
    if not isinstance(text, str):
        raise ValueError(f"the tokenizer's chat template returned {type(text).__name__}, not text")
    return text
