"""Tasks and reward functions, including malformed, truncated and adversarial completions."""

import json
from fractions import Fraction

import pytest

from bellman.llm.tasks import (Task, arithmetic, arithmetic_reward, call_reward, countdown, countdown_reward,
                               extract_answer, format_reward, from_jsonl, get_task, parse_expression,
                               tag_count_reward)


def test_arithmetic_task_rows_and_held_out_split():
    t = arithmetic(digits=(2, 3), op="+", n_train=300, n_test=50, seed=1)
    assert len(t.train) == 300 and len(t.test) == 50
    for r in t.train + t.test:
        a, b = map(int, r["question"].split("+"))
        assert 10 <= a <= 999 and 10 <= b <= 999 and r["answer"] == str(a + b) and r["prompt"] == r["question"] + "="
    assert not {r["question"] for r in t.train} & {r["question"] for r in t.test}
    assert arithmetic(n_train=300, n_test=50, seed=1).train == t.train  # seeded
    m = arithmetic(digits=(1, 2), op="*", n_train=20, n_test=5)
    a, b = map(int, m.train[0]["question"].split("*"))
    assert m.train[0]["answer"] == str(a * b)


def test_arithmetic_reward():
    comps = ["357", " 357\nmore text", "<think>12+345</think><answer>357</answer>", "<answer>0357</answer>",
             "358", "", "<answer>357", "three hundred", "<answer>" + "9" * 400 + "</answer>", "357.0"]
    assert arithmetic_reward([""] * len(comps), comps, answer=["357"] * len(comps)) == \
        [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_extract_answer():
    assert extract_answer("<think>x</think><answer> 5 </answer>") == "5"
    assert extract_answer("<answer>5") is None  # truncated
    assert extract_answer("  42\n<b>") == "42"
    assert extract_answer("   ") is None


def test_format_reward_on_adversarial_completions():
    comps = {
        "12+3=15</think><answer>15</answer>": 1.0,          # prompt ended with <think>
        "<think>12+3</think>\n<answer>15</answer>\n": 1.0,
        "a</think><answer>15</answer> trailing": 0.0,
        "a</think><answer>15": 0.0,                          # truncated
        "a</think><answer></answer>": 0.0,                    # empty answer
        "a<think>b</think></think><answer>1</answer>": 0.0,  # nested / repeated tags
        "a</think><answer><answer>1</answer></answer>": 0.0,
        "<answer>1</answer>a</think>": 0.0,                   # wrong order
        "15": 0.0,
        "": 0.0,
    }
    assert format_reward([""] * len(comps), list(comps)) == list(comps.values())


def test_tag_count_reward_gives_a_quarter_per_tag_placed_as_the_format_wants():
    comps = {
        "12+3=15</think><answer>15</answer>": 1.0,            # prompt ended with <think>
        "<think>12+3</think>\n<answer>15</answer>\n": 1.0,
        "a</think><answer>15</answer> trailing": 1.0,         # the format reward says 0: only tags count here
        "<answer>1</answer>a</think>": 1.0,                   # wrong order: the same
        "a</think><answer>15": 0.75,                          # truncated: no </answer>
        "a</think>": 0.5,                                     # <think> (in the prompt) and </think>
        "a<think>b</think></think><answer>1</answer>": 0.5,  # a second <think>, </think> twice
        "15": 0.25,                                           # no tag but no stray <think> either
        "x <think> y": 0.0,                                   # <think> opened mid-reply
    }
    assert tag_count_reward([""] * len(comps), list(comps)) == list(comps.values())


def test_parse_expression_accepts_only_arithmetic():
    assert parse_expression("(3+5)*7") == (Fraction(56), [3, 5, 7])
    assert parse_expression("7/2-1") == (Fraction(5, 2), [7, 2, 1])
    assert parse_expression("2*3+4*5") == (Fraction(26), [2, 3, 4, 5])  # precedence
    for bad in ("__import__('os')", "2**10", "3+", "(3+5", "3 5", "1e9", "abs(3)", "3+5)", "",
                "(" * 9 + "1" + ")" * 9, "1" * 65, "9999999*9", "1000000*1000000*1000000", "٣+1"):
        with pytest.raises(ValueError):
            parse_expression(bad)
    with pytest.raises(ZeroDivisionError):
        parse_expression("3/(2-2)")
    with pytest.raises(TypeError):
        parse_expression(3)


def test_countdown_reward_levels():
    comps = ["(3+5)*7", "<think>try</think><answer>7*(5+3)</answer>", "3+5+7", "(3+5)*7*1", "3*8*7",
             "", "no answer here", "<answer>__import__('os').system('x')</answer>", "(((((((((3+5)))))))))*7",
             "<answer>(3+5)*7", "3/0+5*7"]
    got = countdown_reward([""] * len(comps), comps, numbers=[[3, 5, 7]] * len(comps), target=[56] * len(comps))
    assert got == [1.0, 1.0, 0.1, 0.1, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_countdown_task_targets_are_reachable():
    t = countdown(n_numbers=3, n_train=50, n_test=10, seed=2)
    rows = t.train + t.test
    assert countdown_reward([""] * len(rows), [r["answer"] for r in rows], numbers=[r["numbers"] for r in rows],
                            target=[r["target"] for r in rows]) == [1.0] * len(rows)


def test_call_reward_checks_length_and_nan():
    with pytest.raises(ValueError, match="returned 1 values for 2"):
        call_reward(lambda p, c, **k: [1.0], ["a", "b"], ["x", "y"], {})
    with pytest.raises(ValueError, match="NaN"):
        call_reward(lambda p, c, **k: [1.0, float("nan")], ["a", "b"], ["x", "y"], {})
    assert call_reward(lambda p, c, answer: [float(x == a) for x, a in zip(c, answer)],
                       ["a", "b"], ["1", "2"], {"answer": ["1", "3"]}) == [1.0, 0.0]


def test_jsonl_task_and_errors(tmp_path):
    f = tmp_path / "qa.jsonl"
    f.write_text("\n".join(json.dumps({"prompt": f"{i}+1=", "answer": i + 1}) for i in range(20)))
    t = from_jsonl(f, test_fraction=0.25)
    assert len(t.train) == 15 and len(t.test) == 5 and t.train[0]["answer"] == str(int(t.train[0]["prompt"][:-3]) + 1)
    assert get_task(str(f)).name == "qa"
    cd = tmp_path / "cd.jsonl"
    cd.write_text("\n".join(json.dumps({"prompt": "p", "numbers": [1, 2], "target": 3}) for _ in range(4)))
    assert from_jsonl(cd).rewards == [countdown_reward]
    with pytest.raises(FileNotFoundError):
        from_jsonl(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="at least 2 rows"):
        from_jsonl(tmp_path / "empty.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x"}\n')
    with pytest.raises(ValueError, match="answer"):
        from_jsonl(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="empty training set"):
        Task("t", [], [{"prompt": "x"}], accuracy=arithmetic_reward)
    with pytest.raises(ValueError, match="unknown task"):
        get_task("chess")


def test_rewards_are_bounded_on_adversarial_text():
    import time
    from bellman.llm.tasks import MAX_COMPLETION_CHARS, has_format
    nasty = ["<answer>" * 125_000, "<think>" + "</think><answer>" * 60_000, "1" * 1_000_000,
             "<answer>(" * 100_000 + "</answer>"]
    for text in nasty:
        assert len(text) >= 900_000
        start = time.process_time()
        arithmetic_reward([""], [text], answer=["1"])
        format_reward([""], [text])
        countdown_reward([""], [text], numbers=[[1, 2]], target=[3])
        assert time.process_time() - start < 1.0  # a bound on work, far above the milliseconds these take
    # the cap keeps what a real completion is read for: the answer of an ordinary completion
    assert arithmetic_reward([""], ["<think>12+3=15</think><answer>15</answer>" + " " * MAX_COMPLETION_CHARS],
                             answer=["15"]) == [1.0]
    assert has_format("<think>a</think> <answer>1</answer>\n") and not has_format("<think>a</think><answer> </answer>")
    assert not has_format("a</think><answer>1</answer><answer>") and not has_format("<answer>1</answer></think>")


def test_reward_and_task_file_errors_name_the_cause(tmp_path):
    from bellman.llm.tasks import call_reward, from_jsonl
    with pytest.raises(TypeError, match="reward function none_reward returned None"):
        def none_reward(prompts, completions, **_):
            return [None] * len(completions)
        call_reward(none_reward, ["p"], ["c"], {})
    with pytest.raises(TypeError, match="returned '1.0' \\(str\\)"):
        call_reward(lambda p, c, **_: ["1.0"], ["p"], ["c"], {})
    with pytest.raises(ValueError, match="numbers and target must be integers"):
        countdown_reward([""], ["3+4"], numbers=[[3.5, 4]], target=[7])
    path = tmp_path / "t.jsonl"
    path.write_text('{"prompt": "a\u2028b", "answer": "1"}\n{"prompt": "x", "answer": "2"}\n{"prompt": oops}\n',
                    encoding="utf-8")
    with pytest.raises(ValueError, match=r"t.jsonl:3: not valid JSON \(Expecting value, column 12\)"):
        from_jsonl(path)
    path.write_text('{"prompt": "a", "numbers": [3.5, 4], "target": 7}\n{"prompt": "b", "numbers": [1], "target": 1}\n')
    with pytest.raises(ValueError, match=r"t.jsonl:1: 'numbers' must be a list of integers"):
        from_jsonl(path)


def test_rewards_read_a_chat_models_answer():
    """A tag or a boxed answer if there is one, else the final number (integers exactly, as before)."""
    comps = ["16 + 22 = 38", "16 + 22 = 38.\n\nSo the sum is as given.", "The answer is $\\boxed{38}$, not 39.",
             "<answer>38</answer> and then 40", "16 + 22 = 38, or maybe 39", "\\boxed{39} after 38",
             "<answer>16 + 22 = 38</answer>", "\\boxed{38", "It is 38.0"]
    assert arithmetic_reward([""] * len(comps), comps, answer=["38"] * len(comps)) == \
        [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert arithmetic_reward([""] * 4, ["1,038", "16-22=-6", "22 - 16 = 6", "x = -6"], answer=["1038", "-6", "6", "-6"]) \
        == [1.0, 1.0, 1.0, 1.0]
    from bellman.llm.tasks import countdown_expression, final_number, last_boxed
    assert final_number("16 + 22 = 38.") == "38" and final_number("no digits") is None
    assert last_boxed("\\boxed{1} then \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}" and last_boxed("\\boxed{1") is None
    assert countdown_expression("(3+5)*7 = 56") == "(3+5)*7" and countdown_expression("\\boxed{7*(5+3)}") == "7*(5+3)"
    assert countdown_reward([""] * 3, ["(3+5)*7 = 56", "The answer: \\boxed{(3+5)*7}", "3+5+7 = 15"],
                            numbers=[[3, 5, 7]] * 3, target=[56] * 3) == [1.0, 1.0, 0.1]


def test_non_integer_answers_are_compared_as_mathematics():
    """math-verify (as TRL's accuracy reward) where the answer is not an integer; text equality still counts."""
    comps = ["0.5", "\\boxed{\\frac{1}{2}}", "<answer>2/4</answer>", "0.6", "<answer>1/3</answer>"]
    assert arithmetic_reward([""] * 5, comps, answer=["1/2"] * 5) == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert arithmetic_reward([""] * 3, ["Paris", "<answer>Paris</answer>", "Rome"], answer=["Paris"] * 3) == \
        [1.0, 1.0, 0.0]
    from bellman.llm.tasks import MAX_VERIFY_CHARS, math_equal
    assert math_equal("1/2", "0.5") and not math_equal("1/2", "1" * (MAX_VERIFY_CHARS + 1))


def test_chat_answer_rewards_stay_bounded_on_adversarial_text():
    import time
    nasty = ["\\boxed{" * 200_000, "1," * 500_000, "-" * 1_000_000, "\\boxed{" + "{" * 999_990 + "1}",
             "1." * 500_000, "9" * 1_000_000]
    for text in nasty:
        start = time.process_time()
        arithmetic_reward([""] * 2, [text, text], answer=["1", "1/2"])
        countdown_reward([""], [text], numbers=[[1, 2]], target=[3])
        assert time.process_time() - start < 1.0  # a bound on work, far above the milliseconds these take


def test_question_prompt_asks_as_a_person_would():
    from bellman.llm.tasks import question_prompt
    assert question_prompt({"prompt": "16+22=", "question": "16+22", "answer": "38"}) == "What is 16 + 22?"
    assert question_prompt({"prompt": "7*8=", "question": "7*8"}) == "What is 7 * 8?"
    assert question_prompt({"prompt": "numbers 1 2 target 3:", "question": "numbers 1 2 target 3"}) == \
        "numbers 1 2 target 3:"


def test_get_task_takes_the_digits_of_arithmetic():
    two = get_task("arithmetic:2", n_train=100, n_test=20)
    assert all(len(x) == 2 for r in two.train + two.test for x in r["question"].split("+"))
    mixed = get_task("arithmetic:1-3", n_train=400, n_test=20)
    assert {len(x) for r in mixed.train for x in r["question"].split("+")} == {1, 2, 3}
    assert get_task("arithmetic:2-2", n_train=100, n_test=20).train == two.train
    for bad in ("arithmetic:", "arithmetic:x", "arithmetic:2-", "arithmetic:10"):
        with pytest.raises(ValueError, match="arithmetic:LO or arithmetic:LO-HI"):
            get_task(bad)
    with pytest.raises(ValueError, match="1 <= lo <= hi <= 9"):
        get_task("arithmetic:3-2")


def test_chat_templates_ask_the_question_in_words():
    from bellman.llm.r1_zero import R1_CHAT, accuracy_reward
    from bellman.llm.tasks import QUESTION
    row = {"prompt": "16+22=", "question": "16+22", "answer": "38"}
    assert QUESTION.prompt(row) == "What is 16 + 22?" and QUESTION.format_reward is None
    task = arithmetic(n_train=10, n_test=2)
    assert QUESTION.accuracy_for(task) is arithmetic_reward
    assert R1_CHAT.prompt(row) == [
        {"role": "user", "content": "What is 16 + 22? Think it through inside <think> </think>, then give only "
                                    "the number inside <answer> </answer>."},
        {"role": "assistant", "content": "<think>"}]
    assert R1_CHAT.format_reward is format_reward and R1_CHAT.accuracy_for(task) is accuracy_reward
