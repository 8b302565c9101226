"""Tasks with verifiable rewards: prompts plus reward functions of the TRL shape.

A reward function is ``reward(prompts, completions, **columns) -> list[float]``: one float per completion;
``columns`` are the task's extra columns (``answer``, ``numbers``, ``target``), one entry per completion.
Users can pass their own (TRL's reward functions plug in unchanged).

Usage::

    from bellman.llm.tasks import arithmetic, countdown, from_jsonl, arithmetic_reward, countdown_reward
    task = arithmetic(digits=(2, 3), op="+", n_train=2000, n_test=200, seed=0)
    task.train[0]          # {"prompt": "12+345=", "question": "12+345", "answer": "357"}
    arithmetic_reward(["12+345="], ["357"], answer=["357"])                      # [1.0]
    arithmetic_reward(["What is 16 + 22?"], ["16 + 22 = 38"], answer=["38"])      # [1.0]: a chat model's reply
    countdown_reward(["..."], ["(3+5)*7"], numbers=[[3, 5, 7]], target=[56])      # [1.0]

Answers are read as a chat model writes them: from ``<answer>...</answer>`` when the completion has that
tag (the R1-Zero template), else from the last ``\boxed{...}`` if there is one (Hendrycks et al. 2021,
"MATH", arXiv:2103.03874), else the arithmetic reward takes the completion's final number and the
countdown reward its first line (up to an ``=``). An integer answer must be written as an integer equal to
it; any other answer is compared as text and, where Hugging Face's ``math-verify`` applies (as in TRL's
accuracy reward), as mathematics ("0.5" equals "1/2" and "\frac{1}{2}"). The countdown checker never calls eval: a small
recursive-descent parser accepts integers, + - * / and parentheses only, with bounds on length, depth
and magnitude, and computes with exact fractions. Every reward reads at most the first
``MAX_COMPLETION_CHARS`` characters of a completion with linear-time string scans (no backtracking
regular expressions over the completion), so adversarial text costs time in proportion to that cap.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from bellman.llm.chat import is_messages

RewardFn = Callable[..., list[float]]

MAX_EXPR_CHARS = 64
MAX_DEPTH = 8
MAX_LITERAL = 10**6
MAX_VALUE = 10**12
MAX_ANSWER_DIGITS = 30
MAX_COMPLETION_CHARS = 20_000  # rewards read at most this much of a completion
MAX_VERIFY_CHARS = 64  # math-verify compares answers of at most this many characters
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
# a number: digits with optional thousands commas and decimals; a minus sign only where it cannot be a
# subtraction (not after a word character or a point). Every part is a disjoint character class, so a scan
# is linear in the text.
_NUMBER = re.compile(r"(?:(?<![\w.])-)?\d+(?:,\d{3})*(?:\.\d+)?")


@dataclass
class Task:
    """Rows of ``{"prompt": str, "question": str, <columns>}`` split into train / test, and the rewards.

    ``accuracy`` is the reward whose value 1.0 means "correct"; ``rewards`` are what a trainer optimises.
    """

    name: str
    train: list[dict]
    test: list[dict]
    accuracy: RewardFn
    rewards: list[RewardFn] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.train:
            raise ValueError(f"task {self.name!r} has an empty training set")
        if not self.test:
            raise ValueError(f"task {self.name!r} has an empty test set")
        if not self.rewards:
            self.rewards = [self.accuracy]


def plain_prompt(row: dict) -> str:
    """The task's own prompt text (no template)."""
    return row["prompt"]


@dataclass(frozen=True)
class Template:
    """A prompt template: how a row becomes a prompt, the format reward it asks for (None: none), and how
    its answers are scored. ``accuracy`` maps a task's accuracy reward to the one to use under this template
    (e.g. one that also requires the answer tag); a task whose reward is not listed keeps its own.
    ``completion`` is the reply SFT trains on under this template (None: the row's bare answer)."""

    name: str
    prompt: Callable[[dict], str]
    format_reward: RewardFn | None = None
    accuracy: Mapping[RewardFn, RewardFn] = field(default_factory=dict)
    completion: Callable[[dict], str] | None = None

    def accuracy_for(self, task: Task) -> RewardFn:
        """The accuracy reward of ``task`` under this template."""
        return self.accuracy.get(task.accuracy, task.accuracy)


PLAIN = Template("plain", plain_prompt)


def columns(rows: Sequence[dict]) -> dict[str, list]:
    """The extra columns of ``rows`` (everything but prompt / question) as lists, ready for ``**columns``."""
    keys = [k for k in rows[0] if k not in ("prompt", "question")]
    return {k: [r[k] for r in rows] for k in keys}


def call_reward(fn: RewardFn, prompts: list[str], completions: list[str], cols: dict[str, list]) -> list[float]:
    """Call a reward function and check it returned one finite float per completion."""
    out = fn(prompts, completions, **cols)
    name = getattr(fn, "__name__", repr(fn))
    if not isinstance(out, (list, tuple)) or len(out) != len(completions):
        n = len(out) if isinstance(out, (list, tuple)) else type(out).__name__
        raise ValueError(f"reward function {name} returned {n} values for {len(completions)} completions; "
                         "it must return a list with one float per completion")
    bad = next((v for v in out if isinstance(v, bool) or not isinstance(v, (int, float))), None)
    if bad is not None or any(v is None for v in out):
        raise TypeError(f"reward function {name} returned {bad!r} ({type(bad).__name__}); rewards must be floats")
    vals = [float(v) for v in out]
    if any(math.isnan(v) or math.isinf(v) for v in vals):
        raise ValueError(f"reward function {name} returned NaN or inf; rewards must be finite floats")
    return vals


# ---- answers and rewards -------------------------------------------------------------------------------

def extract_answer(completion: str) -> str | None:
    """Text of the first ``<answer>...</answer>`` if the completion has an answer tag, else its first line
    (None when the tag is not closed or the line is empty)."""
    completion = completion[:MAX_COMPLETION_CHARS]
    start = completion.find("<answer>")
    if start >= 0:
        end = completion.find("</answer>", start + len("<answer>"))
        return completion[start + len("<answer>"):end].strip() if end >= 0 else None
    line = completion.strip().split("\n", 1)[0].strip()
    return line or None


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` in ``text`` (braces balanced), or None; one forward scan."""
    text = text[:MAX_COMPLETION_CHARS]
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j].strip()
    return None


def final_number(text: str) -> str | None:
    """The last number in ``text`` (thousands commas removed), or None: "16 + 22 = 38." -> "38"."""
    last = None
    for last in _NUMBER.finditer(text[:MAX_COMPLETION_CHARS]):
        pass
    return last.group().replace(",", "") if last else None


def tagged_answer(completion: str) -> tuple[bool, str | None]:
    """(found, text): the ``<answer>`` tag's content if the completion has the tag (None when it is not
    closed), else the last ``\\boxed{}``'s; found is False when it has neither."""
    completion = completion[:MAX_COMPLETION_CHARS]
    if "<answer>" in completion:
        return True, extract_answer(completion)
    boxed = last_boxed(completion)
    return boxed is not None, boxed


def _as_int(s: str | None) -> int | None:
    if s is None or not re.fullmatch(r"-?\d{1,%d}" % MAX_ANSWER_DIGITS, s.strip()):
        return None
    return int(s)


def math_equal(gold: str, answer: str) -> bool:
    """Whether two short answers are equal as mathematics, by Hugging Face's ``math-verify`` (its ``parse``
    and ``verify``, as TRL's accuracy reward). Bounded: answers over ``MAX_VERIFY_CHARS`` are not compared,
    and the comparison runs under math-verify's time limits, which need the main thread (elsewhere: False)."""
    import threading
    if len(gold) > MAX_VERIFY_CHARS or len(answer) > MAX_VERIFY_CHARS or \
            threading.current_thread() is not threading.main_thread():
        return False
    try:
        from math_verify import parse, verify
    except ImportError:  # the llm extra installs it; without it answers are compared as text only
        return False
    try:
        return bool(verify(parse(f"${gold}$", parsing_timeout=1), parse(f"${answer}$", parsing_timeout=1),
                           timeout_seconds=1))
    except Exception:  # math-verify's own errors and time-outs: not shown equal
        return False


def arithmetic_reward(prompts: list[str], completions: list[str], answer: list[str], **_) -> list[float]:
    """1.0 if the completion's answer equals ``answer``, else 0.0. The answer is the ``<answer>`` tag's or the
    last ``\\boxed{}``'s content if there is one, else the completion's final number. An integer ``answer``
    needs an integer equal to it; any other is compared as text (the tag or the first line) and as
    mathematics (``math_equal``)."""
    out = []
    for c, a in zip(completions, answer, strict=True):
        found, got = tagged_answer(c)
        gold = str(a).strip()
        ai = _as_int(gold)
        if ai is not None:
            out.append(float(_as_int(got if found else final_number(c)) == ai))
            continue
        text = got if found else extract_answer(c)
        candidate = got if found else final_number(c)
        out.append(float(text == gold or (candidate is not None and math_equal(gold, candidate))
                         or (text is not None and text != candidate and math_equal(gold, text))))
    return out


def _tags_placed(c: str) -> list[bool]:
    """For each of ``_TAGS``: it occurs as the R1-Zero format wants, each once, <think> only at the start (or
    not at all: the opening <think> may end the prompt)."""
    return [c.count(t) == (c.startswith("<think>") if t == "<think>" else 1) for t in _TAGS]


def has_format(completion: str) -> bool:
    """``[<think>]...</think> <answer>...</answer>`` with each tag exactly once, the answer non-empty and
    nothing but white space after ``</answer>`` (the opening <think> may end the prompt)."""
    c = completion[:MAX_COMPLETION_CHARS]
    if not all(_tags_placed(c)):
        return False
    rest = c[c.index("</think>") + len("</think>"):].lstrip()
    if not rest.startswith("<answer>"):
        return False
    answer, _, tail = rest[len("<answer>"):].partition("</answer>")
    return answer.strip() != "" and tail.strip() == ""


def format_reward(prompts: list[str], completions: list[str], **_) -> list[float]:
    """R1-Zero format reward (DeepSeek-AI 2025, arXiv:2501.12948): 1.0 where ``has_format``, else 0.0."""
    return [float(has_format(c)) for c in completions]


def tag_count_reward(prompts: list[str], completions: list[str], **_) -> list[float]:
    """Partial credit towards the R1-Zero format (Open-R1's ``tag_count_reward``, Hugging Face 2025,
    https://github.com/huggingface/open-r1): 0.25 for each of <think>, </think>, <answer>, </answer> that
    occurs as ``has_format`` wants it (each once; <think> only at the start, or not at all when the prompt
    opens it). Where no sampled completion has the whole format yet, ``format_reward`` is 0 for the whole
    group and GRPO has no signal; this one still ranks completions by how many tags they get right."""
    return [0.25 * sum(_tags_placed(c[:MAX_COMPLETION_CHARS])) for c in completions]


class _Parser:
    """expr := term (('+'|'-') term)* ; term := factor (('*'|'/') factor)* ; factor := INT | '(' expr ')'."""

    def __init__(self, text: str) -> None:
        self.toks = re.findall(r"\d+|[-+*/()]|\S", text)
        self.i, self.depth, self.literals = 0, 0, []

    def parse(self) -> Fraction:
        v = self.expr()
        if self.i != len(self.toks):
            raise ValueError(f"unexpected {self.toks[self.i]!r}")
        return v

    def _peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _check(self, v: Fraction) -> Fraction:
        if abs(v) > MAX_VALUE:
            raise ValueError("value too large")
        return v

    def expr(self) -> Fraction:
        v = self.term()
        while self._peek() in ("+", "-"):
            op = self.toks[self.i]
            self.i += 1
            v = self._check(v + self.term() if op == "+" else v - self.term())
        return v

    def term(self) -> Fraction:
        v = self.factor()
        while self._peek() in ("*", "/"):
            op = self.toks[self.i]
            self.i += 1
            r = self.factor()
            if op == "/" and r == 0:
                raise ZeroDivisionError("division by zero")
            v = self._check(v * r if op == "*" else v / r)
        return v

    def factor(self) -> Fraction:
        t = self._peek()
        if t is None:
            raise ValueError("expression ended early")
        self.i += 1
        if t == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ValueError("parentheses nested too deep")
            v = self.expr()
            if self._peek() != ")":
                raise ValueError("missing ')'")
            self.i += 1
            self.depth -= 1
            return v
        if t.isdigit() and t.isascii():
            if len(t) > 7 or int(t) > MAX_LITERAL:
                raise ValueError("number too large")
            self.literals.append(int(t))
            return Fraction(int(t))
        raise ValueError(f"unexpected {t!r}")


def parse_expression(text: str) -> tuple[Fraction, list[int]]:
    """Value and integer literals of an arithmetic expression (integers, + - * / and parentheses only).

    Raises ValueError on anything else, on more than MAX_EXPR_CHARS characters, on nesting deeper than
    MAX_DEPTH, on literals above MAX_LITERAL or values above MAX_VALUE; ZeroDivisionError on x/0.
    """
    if not isinstance(text, str):
        raise TypeError(f"expression must be a str, got {type(text).__name__}")
    if len(text) > MAX_EXPR_CHARS:
        raise ValueError(f"expression longer than {MAX_EXPR_CHARS} characters")
    if not re.fullmatch(r"[\d+\-*/() ]+", text):
        raise ValueError("only integers, + - * / and parentheses are allowed")
    p = _Parser(text)
    return p.parse(), p.literals


def countdown_expression(completion: str) -> str | None:
    """The expression a countdown completion answers with: the ``<answer>`` tag's or last ``\\boxed{}``'s
    content, else the first line; an ``expr = value`` there gives ``expr``."""
    found, got = tagged_answer(completion)
    expr = got if found else extract_answer(completion)
    if expr is not None and expr.count("=") == 1:
        expr = expr.split("=")[0].strip()
    return expr


def countdown_reward(prompts: list[str], completions: list[str], numbers: list[list[int]], target: list[int],
                     **_) -> list[float]:
    """Countdown (TinyZero, Pan et al. 2025): 0.0 no parseable answer, 0.1 well formed but wrong, 1.0 correct.

    Correct: the expression uses each of ``numbers`` exactly once and evaluates exactly to ``target``.
    """
    out = []
    for c, nums, t in zip(completions, numbers, target, strict=True):
        if any(isinstance(n, bool) or not isinstance(n, int) for n in (*nums, t)):
            raise ValueError(f"countdown_reward: numbers and target must be integers, got numbers={nums!r}, "
                             f"target={t!r}")
        expr = countdown_expression(c)
        try:
            value, used = parse_expression(expr) if expr else (None, None)
        except (ValueError, ZeroDivisionError):
            value = None
        if value is None:
            out.append(0.0)
        else:
            out.append(1.0 if sorted(used) == sorted(nums) and value == t else 0.1)
    return out


def countdown_accuracy(prompts: list[str], completions: list[str], numbers: list[list[int]], target: list[int],
                       **_) -> list[float]:
    """1.0 where ``countdown_reward`` says correct, else 0.0."""
    return [float(r == 1.0) for r in countdown_reward(prompts, completions, numbers, target)]


# ---- built-in tasks ------------------------------------------------------------------------------------

def _split(rows: list[dict], n_train: int, n_test: int, name: str) -> tuple[list[dict], list[dict]]:
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be >= 1, got {n_train}, {n_test}")
    if len(rows) < n_train + n_test:
        raise ValueError(f"{name}: only {len(rows)} distinct problems for n_train + n_test = {n_train + n_test}")
    return rows[n_test:n_test + n_train], rows[:n_test]


def arithmetic(digits: tuple[int, int] = (2, 3), op: str = "+", n_train: int = 2000, n_test: int = 200,
               seed: int = 0) -> Task:
    """a op b with a, b of ``digits[0]``..``digits[1]`` digits; op "+" or "*". Test problems are held out."""
    if op not in ("+", "*"):
        raise ValueError(f"op must be '+' or '*', got {op!r}")
    lo, hi = digits
    if not 1 <= lo <= hi <= 9:
        raise ValueError(f"digits must be (lo, hi) with 1 <= lo <= hi <= 9, got {digits}")
    rng = random.Random(seed)
    seen, rows = set(), []
    space = sum(9 * 10 ** (d - 1) for d in range(lo, hi + 1)) ** 2
    while len(rows) < min(n_train + n_test, space):
        a, b = (rng.randint(10 ** (d - 1), 10 ** d - 1) for d in (rng.randint(lo, hi), rng.randint(lo, hi)))
        if (a, b) in seen:
            continue
        seen.add((a, b))
        q = f"{a}{op}{b}"
        rows.append({"prompt": q + "=", "question": q, "answer": str(a + b if op == "+" else a * b)})
    train, test = _split(rows, n_train, n_test, "arithmetic")
    return Task(f"arithmetic{op}", train, test, accuracy=arithmetic_reward)


def question_prompt(row: dict) -> str:
    """A row's question as a chat model is asked it: arithmetic ``16+22`` -> "What is 16 + 22?"; other rows
    keep their prompt. Use it as ``prompt_fn`` with a chat model (the chat template wraps it)."""
    q = row.get("question")
    if isinstance(q, str) and re.fullmatch(r"\d{1,9}[+*]\d{1,9}", q):
        a, op, b = re.split(r"([+*])", q)
        return f"What is {a} {op} {b}?"
    return row["prompt"]


QUESTION = Template("question", question_prompt)
"""Arithmetic asked as a chat model is asked it ("What is 16 + 22?"); other tasks keep their prompt."""


def countdown(n_numbers: int = 3, max_number: int = 20, n_train: int = 2000, n_test: int = 200,
              seed: int = 0) -> Task:
    """Countdown: reach ``target`` with ``numbers`` (each once) using + - * /; ``answer`` is one solution."""
    if not 2 <= n_numbers <= 6:
        raise ValueError(f"n_numbers must be in 2..6, got {n_numbers}")
    if max_number < 2:
        raise ValueError(f"max_number must be >= 2, got {max_number}")
    rng = random.Random(seed)
    seen, rows = set(), []
    for _ in range(50 * (n_train + n_test)):
        if len(rows) == n_train + n_test:
            break
        nums = [rng.randint(1, max_number) for _ in range(n_numbers)]
        expr = str(nums[0])
        for n in nums[1:]:
            expr = f"({expr}{rng.choice('+-*')}{n})"
        target = int(parse_expression(expr)[0])
        if target <= 0 or (tuple(nums), target) in seen:
            continue
        seen.add((tuple(nums), target))
        q = f"numbers {' '.join(map(str, nums))} target {target}"
        rows.append({"prompt": q + ":", "question": q, "numbers": nums, "target": target, "answer": expr[1:-1]})
    train, test = _split(rows, n_train, n_test, "countdown")
    return Task("countdown", train, test, accuracy=countdown_accuracy, rewards=[countdown_reward])


def from_jsonl(path: str | Path, test_fraction: float = 0.1, seed: int = 0) -> Task:
    """Rows from a JSONL file with a ``prompt`` column and either ``answer`` or ``numbers`` + ``target``.
    A prompt is a string or a list of ``{"role", "content"}`` chat messages (TRL's conversational format),
    rendered with the model's chat template (``bellman.llm.chat``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"task file {str(path)!r} does not exist")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rows = []
    for i, line in enumerate(path.read_text().split("\n"), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i}: not valid JSON ({e.msg}, column {e.colno})") from None
        if not isinstance(r, dict) or not (isinstance(r.get("prompt"), str) or is_messages(r.get("prompt"))):
            raise ValueError(f"{path}:{i}: each line must be a JSON object whose 'prompt' is a string or a "
                             "non-empty list of {\"role\": str, \"content\": str} chat messages")
        if "answer" not in r and not ("numbers" in r and "target" in r):
            raise ValueError(f"{path}:{i}: needs an 'answer' column or 'numbers' and 'target' columns")
        if "numbers" in r and not (isinstance(r["numbers"], list) and all(
                isinstance(n, int) and not isinstance(n, bool) for n in [*r["numbers"], r.get("target", 0)])):
            raise ValueError(f"{path}:{i}: 'numbers' must be a list of integers and 'target' an integer")
        question = r["prompt"] if isinstance(r["prompt"], str) else r["prompt"][-1]["content"]
        rows.append({"question": question, **r})
    if len(rows) < 2:
        raise ValueError(f"{path}: need at least 2 rows (train and test), got {len(rows)}")
    random.Random(seed).shuffle(rows)
    n_test = max(1, round(test_fraction * len(rows)))
    if "numbers" in rows[0] and "target" in rows[0]:
        return Task(path.stem, rows[n_test:], rows[:n_test], accuracy=countdown_accuracy, rewards=[countdown_reward])
    for r in rows:
        r["answer"] = str(r["answer"])
    return Task(path.stem, rows[n_test:], rows[:n_test], accuracy=arithmetic_reward)


def get_task(name: str, seed: int = 0, n_train: int = 2000, n_test: int = 200) -> Task:
    """``arithmetic`` (2-3 digit addition; ``arithmetic:2`` 2-digit, ``arithmetic:2-3`` 2 to 3 digits),
    ``arithmetic*`` (multiplication), ``countdown`` or a JSONL path."""
    if name == "arithmetic":
        return arithmetic(seed=seed, n_train=n_train, n_test=n_test)
    if name.startswith("arithmetic:"):
        m = re.fullmatch(r"arithmetic:(\d)(?:-(\d))?", name)
        if m is None:
            raise ValueError(f"task {name!r}: the digits are given as arithmetic:LO or arithmetic:LO-HI with "
                             "1 <= LO <= HI <= 9, e.g. arithmetic:2 or arithmetic:2-3")
        lo = int(m[1])
        return arithmetic(digits=(lo, int(m[2] or lo)), seed=seed, n_train=n_train, n_test=n_test)
    if name == "arithmetic*":
        return arithmetic(digits=(1, 2), op="*", seed=seed, n_train=n_train, n_test=n_test)
    if name == "countdown":
        return countdown(seed=seed, n_train=n_train, n_test=n_test)
    if name.endswith(".jsonl"):
        return from_jsonl(name, seed=seed)
    raise ValueError(f"unknown task {name!r}; use arithmetic, arithmetic:LO[-HI], arithmetic*, countdown or a "
                     "FILE.jsonl")
