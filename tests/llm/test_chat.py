"""Chat prompts: the chat template around a task's prompt, conversational JSONL prompts, the switch, errors."""

import json

import pytest

from bellman.llm.chat import render_prompt, uses_chat
from bellman.llm.grpo import GRPOConfig, GRPOTrainer
from bellman.llm.model import TinyConfig, tiny_model
from bellman.llm.tasks import arithmetic, from_jsonl

TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")


def chat_tiny():
    model, tok = tiny_model(TinyConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=2))
    tok.chat_template = TEMPLATE
    return model, tok


def test_render_prompt_with_and_without_a_template():
    _, tok = chat_tiny()
    assert render_prompt(tok, "1+2=", True) == "<user>1+2=\n<assistant>"
    assert render_prompt(tok, [{"role": "system", "content": "add"}, {"role": "user", "content": "1+2="}], True) \
        == "<system>add\n<user>1+2=\n<assistant>"
    assert render_prompt(tok, "1+2=", False) == "1+2="
    assert uses_chat(tok, None) and not uses_chat(tok, False)
    with pytest.raises(ValueError, match="needs a tokenizer with a chat template"):
        render_prompt(tok, [{"role": "user", "content": "1+2="}], False)
    with pytest.raises(ValueError, match="a prompt must be a string or a non-empty list"):
        render_prompt(tok, [{"role": "user"}], True)
    tok.chat_template = None
    assert not uses_chat(tok, None)
    with pytest.raises(ValueError, match="chat_template=True but the tokenizer has no chat template"):
        uses_chat(tok, True)


def test_a_failing_chat_template_is_one_clear_error():
    _, tok = chat_tiny()
    tok.chat_template = "{{ raise_exception('only system messages here') }}"
    with pytest.raises(ValueError, match="the tokenizer's chat template failed on .*only system messages here.*"
                                         "chat_template=False"):
        render_prompt(tok, "1+2=", True)
    tok.chat_template = "{{ messages[3]['content'] }}"
    with pytest.raises(ValueError, match="chat template failed"):
        render_prompt(tok, "1+2=", True)


def test_trainers_render_prompts_through_the_chat_template_unless_switched_off():
    seen = []

    def spy(prompts, completions, answer, **_):
        seen.extend(prompts)
        return [0.0] * len(completions)

    task = arithmetic(digits=(1, 1), n_train=20, n_test=4)
    for chat_template, expect in ((None, "<user>{}\n<assistant>"), (False, "{}")):
        model, tok = chat_tiny()
        seen.clear()
        cfg = GRPOConfig(total_steps=1, num_generations=2, prompts_per_step=2, max_new_tokens=4, eval_rows=2,
                         eval_max_new_tokens=4, progress=False, chat_template=chat_template)
        trainer = GRPOTrainer(model, tok, task, cfg, rewards=[spy], accuracy=spy)
        trainer.train()
        assert seen and all(p in {expect.format(r["prompt"]) for r in task.train + task.test} for p in seen)
        assert trainer.prompt(task.test[0]) == expect.format(task.test[0]["prompt"])


def test_jsonl_prompts_may_be_chat_messages(tmp_path):
    _, tok = chat_tiny()
    f = tmp_path / "chat.jsonl"
    f.write_text("\n".join(json.dumps({"prompt": [{"role": "system", "content": "add"},
                                                 {"role": "user", "content": f"{i}+1="}], "answer": i + 1})
                           for i in range(10)))
    task = from_jsonl(f)
    row = task.test[0]
    assert row["question"] == row["prompt"][-1]["content"] and row["answer"] == str(int(row["question"][:-3]) + 1)
    assert render_prompt(tok, row["prompt"], True) == f"<system>add\n<user>{row['question']}\n<assistant>"
    (tmp_path / "bad.jsonl").write_text(json.dumps({"prompt": [{"role": "user"}], "answer": 1}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: each line must be a JSON object whose 'prompt' is a string "
                                         r"or a non-empty list"):
        from_jsonl(tmp_path / "bad.jsonl")


def test_smollm2_reads_a_chat_prompt_and_the_reward_reads_its_answer(smollm2):
    """SmolLM2's own template around the question; its greedy reply is scored by the number it ends with."""
    from bellman.llm.engine import get_engine
    from bellman.llm.rollout import SamplingConfig
    from bellman.llm.tasks import arithmetic_reward
    model, tok = smollm2
    text = render_prompt(tok, "What is 16 + 22?", uses_chat(tok, None))
    assert text == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                    "<|im_end|>\n<|im_start|>user\nWhat is 16 + 22?<|im_end|>\n<|im_start|>assistant\n")
    ro = get_engine(model, tok).generate([text], SamplingConfig(temperature=0.0, max_new_tokens=16))
    reply = ro.completions(tok)[0]
    assert reply.startswith("16 + 22 = ")
    said = reply.removeprefix("16 + 22 = ").split()[0].rstrip(".")
    assert arithmetic_reward([text], [reply], answer=[said]) == [1.0]
    assert arithmetic_reward([text], [reply], answer=[str(int(said) + 1)]) == [0.0]


def test_a_final_assistant_message_opens_the_reply(smollm2):
    """R1-Zero's reply opened with <think> under SmolLM2's template: no end of turn after it, no new turn."""
    from bellman.llm.r1_zero import R1_CHAT
    _, tok = smollm2
    row = {"prompt": "16+22=", "question": "16+22", "answer": "38"}
    text = render_prompt(tok, R1_CHAT.prompt(row), True)
    assert text.endswith("<|im_start|>user\nWhat is 16 + 22? Think it through inside <think> </think>, then give "
                         "only the number inside <answer> </answer>.<|im_end|>\n<|im_start|>assistant\n<think>")
    assert text.count("<|im_start|>assistant") == 1
