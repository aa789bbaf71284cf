"""``arith``: generated grade-school arithmetic word problems with GSM8K-style answers.

Each problem is a chain: a starting amount (plain, or groups times a count), one to three changes
(add, add groups, take away, multiply, split and keep a share, or in money problems earn, spend and
buy at a price), then a question, sometimes one that shares the result out. Sentences are drawn
from lists of wordings in ``arith_wordings``; some numbers are written as words and some
questions carry a sentence with a number that does not matter.

The two splits never share a wording, a name, an object, a distractor sentence or a starting
amount, and two- and three-change problems in the test split use orders of operations that the
train split never shows (``SPLIT_NOTE`` says so in ``data inspect`` and the report).

Example row:
    {"messages": [
        {"role": "user", "content":
            "Mia has 23 stickers. Then Mia gets 15 more. Mia gives away 8 of them. "
            "How many stickers does Mia have now?"},
        {"role": "assistant", "content":
            "23 + 15 = 38.\\n38 - 8 = 30.\\n#### 30"}],
     "answer": "30"}
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Optional

from tunesmith.data.builtin import HELD_OUT_SEED, BuiltinDataset, register_builtin
from tunesmith.data.builtin import arith_wordings as W
from tunesmith.errors import DataError

SPLITS = ("train", "test")
DEFAULT_SIZES = {"train": 2000, "test": 200}
# Starting amounts: the test split starts from a band of amounts the train split never starts
# from; the band lies inside the trained span, so the test asks for the same arithmetic on
# starting values never seen in that role.
START_SPAN = (3, 60)
HELD_OUT_START = (36, 45)
# How many changes a problem has (the share-out question counts as one).
CHAIN_LENGTHS = (1, 2, 3)
CHAIN_WEIGHTS = (0.35, 0.4, 0.25)
# Working lines at most (a change that adds groups takes two), so answers fit eval.max_new_tokens.
MAX_LINES = 4
WORD_NUMBER_RATE = 0.15
DISTRACTOR_RATE = 0.3
SYSTEM_PROMPT = "Solve the problem step by step. End with #### and the final number."
SPLIT_NOTE = ("split by wording: the test problems use sentence wordings, names, objects, "
              "distractor sentences and starting amounts (36-45) that no training problem uses, "
              "and their multi-step problems use orders of operations that training never shows")


def held_out_order(ops: str) -> bool:
    """Whether an order of two or more operations (e.g. ``"+-"``) belongs to the test split."""
    if len(ops) < 2:
        return False
    return hashlib.sha256(ops.encode()).digest()[0] % 4 == 0


@dataclass(frozen=True)
class Step:
    """One working line ``a op b = c``; ``a_from`` / ``b_from`` index the earlier step whose result
    the operand is (None: a number from the question). ``arith_pref`` follows these to carry a slip."""

    a: int
    op: str
    b: int
    c: int
    a_from: Optional[int] = None
    b_from: Optional[int] = None


@dataclass(frozen=True)
class ArithProblem:
    """A generated problem: the question, its working (lines and ``#### N``), the answer and the steps."""

    question: str
    working: str
    answer: int
    steps: tuple[Step, ...]


class _Result(int):
    """A number a working line computed, remembering which line (so later lines know their sources)."""

    step: int


def apply_op(a: int, op: str, b: int) -> int:
    """``a op b`` for the four operations of the working lines (``/`` divides exactly)."""
    if op == "/":
        return a // b
    return {"+": a + b, "-": a - b, "*": a * b}[op]


class _Problem:
    """A chain under construction: the sentences, the working lines and the running amount."""

    def __init__(self, rng: random.Random, split: str, money: bool):
        self.rng, self.split, self.money = rng, split, money
        name, other = rng.sample(W.NAMES.part(split), 2)
        item, items = rng.choice(W.ITEMS.part(split)).split("|")
        self.slots = {"name": name, "other": other, "obj": rng.choice(W.OBJECTS.part(split)),
                      "box": rng.choice(W.BOXES.part(split)), "item": item, "items": items}
        self.sentences: list[str] = []
        self.lines: list[str] = []
        self.ops = ""
        self.value = 0
        self.steps: list[Step] = []

    def say(self, pool: W.Pool, **numbers: int) -> None:
        words = {key: self._number(value) for key, value in numbers.items()}
        self.sentences.append(self.rng.choice(pool.part(self.split)).format(**self.slots, **words))

    def _number(self, value: int) -> str:
        if value < len(W.WORDS) and self.rng.random() < WORD_NUMBER_RATE:
            return W.WORDS[value]
        return str(value)

    def compute(self, a: int, op: str, b: int) -> int:
        """Write the line for ``a op b`` and return its result; the only place answers are computed."""
        c = apply_op(a, op, b)
        if c < 0 or (op == "/" and a % b):
            raise AssertionError(f"bad equation {a} {op} {b}")  # a generator bug, never user input
        self.lines.append(f"{a} {op} {b} = {c}.")
        result = _Result(c)
        result.step = len(self.steps)
        self.steps.append(Step(int(a), op, int(b), c, getattr(a, "step", None), getattr(b, "step", None)))
        return result


def _start(p: _Problem) -> None:
    if p.rng.random() < 0.3:
        g, k = p.rng.randint(2, 9), p.rng.randint(2, 9)
        p.say(W.START_WAGE if p.money else W.START_GROUPS, g=g, k=k)
        p.value = p.compute(g, "*", k)
        return
    low, high = HELD_OUT_START
    if p.split == "test":
        p.value = p.rng.randint(low, high)
    else:
        p.value = p.rng.choice([v for v in range(START_SPAN[0], START_SPAN[1] + 1) if not low <= v <= high])
    p.say(W.START_MONEY if p.money else W.START, n=p.value)


def _divisors(value: int) -> list[int]:
    return [k for k in range(2, 10) if value % k == 0 and value // k >= 2]


def _change(p: _Problem, op: str) -> bool:
    """Apply one change of kind ``op`` (``+ - * /``); False if the amount does not allow it."""
    rng = p.rng
    if op == "+":
        if rng.random() < 0.3:
            g, k = rng.randint(2, 6), rng.randint(2, 9)
            p.say(W.MONEY_EARN_HOURS if p.money else W.ADD_GROUPS, g=g, k=k)
            p.value = p.compute(p.value, "+", p.compute(g, "*", k))
        else:
            n = rng.randint(2, 40)
            p.say(W.MONEY_ADD if p.money else W.ADD, n=n)
            p.value = p.compute(p.value, "+", n)
        return True
    if op == "-":
        if p.value < 4:
            return False
        if p.money and p.value >= 8 and rng.random() < 0.4:
            options = [(g, k) for g in range(2, 7) for k in range(2, 10) if g * k < p.value]
            g, k = rng.choice(options)
            p.say(W.MONEY_BUY, g=g, k=k)
            p.value = p.compute(p.value, "-", p.compute(g, "*", k))
            return True
        n = max(rng.randint(1, p.value - 2), 2)  # the amount is 4 or more here
        p.say(W.MONEY_SUB if p.money else W.SUB, n=n)
        p.value = p.compute(p.value, "-", n)
        return True
    if op == "*":
        if p.money or p.value > 40:
            return False
        k = rng.choice((2, 3) if p.value > 20 else (2, 3, 4))
        p.say(W.DOUBLE, k=k)
        p.value = p.compute(p.value, "*", k)
        return True
    divisors = _divisors(p.value)
    if p.money or not divisors:
        return False
    k = rng.choice(divisors)
    p.say(W.SPLIT_KEEP, k=k)
    p.value = p.compute(p.value, "/", k)
    return True


def _generate(rng: random.Random, split: str) -> ArithProblem | None:
    """One problem, or None when the drawn chain does not fit."""
    p = _Problem(rng, split, money=rng.random() < 0.3)
    _start(p)
    length = rng.choices(CHAIN_LENGTHS, CHAIN_WEIGHTS)[0]
    share_at_end = not p.money and rng.random() < 0.25
    ops = "".join(rng.choice("+-*/" if not p.money else "+-") for _ in range(length))
    if share_at_end:
        ops = ops[:-1] + "/"
    if (split == "test") != held_out_order(ops) and len(ops) >= 2:
        return None
    for i, op in enumerate(ops):
        if share_at_end and i == len(ops) - 1:
            divisors = _divisors(p.value)
            if not divisors:
                return None
            k = rng.choice(divisors)
            p.say(W.SHARE_QUESTION, k=k)
            p.value = p.compute(p.value, "/", k)
        elif not _change(p, op):
            return None
    if len(p.lines) > MAX_LINES:
        return None
    if not share_at_end:
        p.say(W.MONEY_QUESTION if p.money else W.QUESTION)
    if rng.random() < DISTRACTOR_RATE:
        slots = dict(p.slots, n=str(rng.randint(2, 60)))
        distractor = rng.choice(W.DISTRACTOR.part(split)).format(**slots)
        p.sentences.insert(rng.randint(1, len(p.sentences) - 1), distractor)
    working = "\n".join(p.lines) + f"\n#### {p.value}"
    return ArithProblem(" ".join(p.sentences), working, int(p.value), tuple(p.steps))


def build_arith(split: str, seed: int = 0, n: int | None = None) -> list[dict]:
    """Generate ``n`` distinct arithmetic word problems for ``split``.

    Args:
        split: ``"train"`` or ``"test"``.
        seed: Same (split, seed, n) gives the same rows; a shorter ``n`` gives a prefix.
        n: Number of rows; defaults to 2000 for train and 200 for test.

    Returns:
        Rows like ``{"messages": [{"role": "user", ...}, {"role": "assistant", ...}],
        "answer": "38"}``.

    Raises:
        DataError: If ``split`` is unknown or ``n`` is negative or too large.
    """
    return [{"messages": [{"role": "user", "content": p.question}, {"role": "assistant", "content": p.working}],
             "answer": str(p.answer)} for p in arith_problems(split, seed, n, "arith")]


def arith_problems(split: str, seed: int = 0, n: int | None = None, name: str = "arith") -> list[ArithProblem]:
    """The ``n`` distinct problems behind ``build_arith(split, seed, n)``, with their working steps.

    ``name`` is the dataset named in errors (``arith-pref`` and ``arith-prompts`` use these too).
    """
    if split not in SPLITS:
        raise DataError(f"{name}: unknown split '{split}'; allowed splits: {', '.join(SPLITS)}")
    n = DEFAULT_SIZES[split] if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise DataError(f"{name}: n must be a non-negative integer, got {n!r}")
    # Each split has its own stream, seeded by a string so it is stable across Python runs.
    rng = random.Random(f"arith/{split}/{seed}")
    problems: list[ArithProblem] = []
    seen: set[str] = set()
    for _ in range(50 * n + 1000):  # bounded: the problem space is large but finite
        if len(problems) == n:
            break
        problem = _generate(rng, split)
        if problem is None or problem.question in seen:
            continue
        seen.add(problem.question)
        problems.append(problem)
    if len(problems) < n:
        raise DataError(f"{name}: could not generate {n} distinct {split} problems; ask for fewer")
    return problems


_NUMBER = re.compile(r"(?<![\d.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def extract_final_number(text: str) -> str | None:
    """Return the model's final answer as a normalised integer-or-decimal string.

    GSM8K convention: the first number after the last ``####``; without ``####``, the last number
    in the text. Commas are dropped and ``"38.0"`` becomes ``"38"``.

    Example:
        ``extract_final_number("23 + 15 = 38.\\n#### 38")`` -> ``'38'``
    """
    # After "####" take the first number: the model may ramble on after its answer.
    if "####" in text:
        numbers = _NUMBER.findall(text.rsplit("####", 1)[1])[:1]
    else:
        numbers = _NUMBER.findall(text)
    if not numbers:
        return None
    number = numbers[-1].replace(",", "")
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return "0" if number == "-0" else number


register_builtin(BuiltinDataset(
    name="arith",
    build=build_arith,
    system_prompt=SYSTEM_PROMPT,
    description="generated grade-school arithmetic word problems (chains of one to three "
                "steps, +-*/), answers with working and a final '#### N' line",
    split_note=SPLIT_NOTE,
    held_out_seed=HELD_OUT_SEED,
))
