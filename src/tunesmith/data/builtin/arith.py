"""``arith``: generated grade-school arithmetic word problems with GSM8K-style answers.

Numbers stay small (sums of 2..60, factors 2..12, exact division) so a 135M-parameter model can
learn the task on a CPU in minutes. About half the problems take one step, half take two.

Example row:
    {"messages": [
        {"role": "user", "content":
            "Mia has 23 stickers and gets 15 more. How many stickers does Mia have now?"},
        {"role": "assistant", "content":
            "Mia starts with 23 stickers and gets 15 more: 23 + 15 = 38.\\n#### 38"}],
     "answer": "38"}
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Callable

from tunesmith.data.builtin import BuiltinDataset, register_builtin
from tunesmith.errors import DataError

SPLITS = ("train", "test")
DEFAULT_SIZES = {"train": 2000, "test": 200}
# One question in five belongs to the test split (decided by a hash of its text), so the splits
# are disjoint whatever sizes are asked for, and test rows never depend on the train size.
_TEST_BUCKETS = 5

NAMES = ("Mia", "Leo", "Ava", "Noah", "Zoe", "Sam", "Lily", "Omar", "Nina", "Ben", "Ella", "Raj",
         "Grace", "Tom", "Lucy", "Ivan", "Maya", "Jack", "Sara", "Kai")
OBJECTS = ("apples", "marbles", "stickers", "pencils", "cookies", "shells", "stamps", "cards",
           "crayons", "beads", "balloons", "oranges")
CONTAINERS = ("boxes", "bags", "jars", "baskets", "packs", "trays")
ITEMS = (("notebook", "notebooks"), ("toy car", "toy cars"), ("kite", "kites"), ("comic", "comics"),
         ("ticket", "tickets"), ("sandwich", "sandwiches"), ("puzzle", "puzzles"))

# A template returns (question, working lines, answer). Two people come from rng.sample so a
# question never has someone giving to themselves.
Problem = tuple[str, list[str], int]
Template = Callable[[random.Random], Problem]


def _ints(rng: random.Random, *highs: int) -> list[int]:
    return [rng.randint(2, high) for high in highs]  # 2 is the floor so nouns stay plural


def _eq(label: str, a: int, op: str, b: int) -> tuple[str, int]:
    """Return the line ``"label: a op b = c."`` and c; the only place answers are computed."""
    c = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
    if c < 0 or (op == "/" and a % b):
        raise AssertionError(f"bad equation {a} {op} {b}")  # a template bug, never user input
    return f"{label}: {a} {op} {b} = {c}.", c


# --- one-step templates ----------------------------------------------------------------

def _add_gets(rng: random.Random) -> Problem:
    name, obj, (a, b) = rng.choice(NAMES), rng.choice(OBJECTS), _ints(rng, 60, 60)
    line, c = _eq(f"{name} starts with {a} {obj} and gets {b} more", a, "+", b)
    q = f"{name} has {a} {obj} and gets {b} more. How many {obj} does {name} have now?"
    return q, [line], c


def _sub_gives(rng: random.Random) -> Problem:
    (name, other), obj, a = rng.sample(NAMES, 2), rng.choice(OBJECTS), rng.randint(10, 60)
    b = rng.randint(2, a - 1)
    line, c = _eq(f"{name} gives away {b} of {a} {obj}", a, "-", b)
    q = (f"{name} had {a} {obj} and gave {b} of them to {other}. "
         f"How many {obj} does {name} have left?")
    return q, [line], c


def _add_together(rng: random.Random) -> Problem:
    (name, other), obj = rng.sample(NAMES, 2), rng.choice(OBJECTS)
    a, b = _ints(rng, 60, 60)
    line, c = _eq("Together they have", a, "+", b)
    q = f"{name} has {a} {obj} and {other} has {b} {obj}. How many {obj} do they have together?"
    return q, [line], c


def _sub_compare(rng: random.Random) -> Problem:
    (name, other), a = rng.sample(NAMES, 2), rng.randint(10, 60)
    b = rng.randint(2, a - 1)
    line, c = _eq(f"{name} read more pages than {other}", a, "-", b)
    q = (f"{name} read {a} pages and {other} read {b} pages. "
         f"How many more pages did {name} read than {other}?")
    return q, [line], c


def _mul_groups(rng: random.Random) -> Problem:
    box, obj = rng.choice(CONTAINERS), rng.choice(OBJECTS)
    a, b = _ints(rng, 12, 12)
    line, c = _eq(f"{a} {box} of {b} {obj}", a, "*", b)
    q = f"There are {a} {box} with {b} {obj} in each. How many {obj} are there in total?"
    return q, [line], c


def _mul_price(rng: random.Random) -> Problem:
    (item, items), name = rng.choice(ITEMS), rng.choice(NAMES)
    price, count = _ints(rng, 12, 12)
    line, c = _eq(f"{count} {items} at {price} dollars each", count, "*", price)
    q = f"One {item} costs {price} dollars. How many dollars does {name} pay for {count} {items}?"
    return q, [line], c


def _div_share(rng: random.Random) -> Problem:
    name, obj, (k, each) = rng.choice(NAMES), rng.choice(OBJECTS), _ints(rng, 12, 12)
    line, c = _eq(f"{k * each} {obj} shared by {k} friends", k * each, "/", k)
    q = (f"{name} shares {k * each} {obj} equally among {k} friends. "
         f"How many {obj} does each friend get?")
    return q, [line], c


def _div_rows(rng: random.Random) -> Problem:
    k, rows = _ints(rng, 12, 12)
    line, c = _eq(f"{k * rows} chairs in rows of {k}", k * rows, "/", k)
    q = f"A teacher sets out {k * rows} chairs in rows of {k}. How many rows are there?"
    return q, [line], c


# --- two-step templates: the second line starts from the first line's result -------------

def _buy_then_give(rng: random.Random) -> Problem:
    (name, other), obj = rng.sample(NAMES, 2), rng.choice(OBJECTS)
    a, b = _ints(rng, 40, 30)
    c = rng.randint(2, a + b - 1)
    line1, total = _eq("After buying", a, "+", b)
    line2, left = _eq("After giving", total, "-", c)
    q = (f"{name} has {a} {obj} and buys {b} more, then gives {c} to {other}. "
         f"How many {obj} does {name} have now?")
    return q, [line1, line2], left


def _groups_then_add(rng: random.Random) -> Problem:
    name, box, obj = rng.choice(NAMES), rng.choice(CONTAINERS), rng.choice(OBJECTS)
    a, b, c = _ints(rng, 9, 9, 30)
    line1, packed = _eq(f"In the {box}", a, "*", b)
    line2, total = _eq("With the loose ones", packed, "+", c)
    q = (f"{name} has {a} {box} with {b} {obj} in each and {c} loose {obj}. "
         f"How many {obj} does {name} have in all?")
    return q, [line1, line2], total


def _earn_then_spend(rng: random.Random) -> Problem:
    name, (rate, hours) = rng.choice(NAMES), _ints(rng, 12, 9)
    spent = rng.randint(2, rate * hours - 1)
    line1, earned = _eq("Earned", rate, "*", hours)
    line2, left = _eq("After spending", earned, "-", spent)
    q = (f"{name} earns {rate} dollars an hour and works {hours} hours, then spends {spent} "
         f"dollars. How many dollars does {name} have left?")
    return q, [line1, line2], left


def _pick_then_split(rng: random.Random) -> Problem:
    (name, other), obj = rng.sample(NAMES, 2), rng.choice(OBJECTS)
    k, each = _ints(rng, 6, 10)
    a = rng.randint(2, k * each - 2)  # both pick 2+ (plural nouns) and the total divides evenly
    line1, total = _eq("Picked together", a, "+", k * each - a)
    line2, c = _eq("Per basket", total, "/", k)
    q = (f"{name} picks {a} {obj} and {other} picks {k * each - a} {obj}. They split them "
         f"equally into {k} baskets. How many {obj} go in each basket?")
    return q, [line1, line2], c


def _book_pages_left(rng: random.Random) -> Problem:
    name, (per_day, days) = rng.choice(NAMES), _ints(rng, 9, 6)
    length = per_day * days + rng.randint(2, 40)
    line1, read = _eq("Pages read", per_day, "*", days)
    line2, left = _eq("Pages left", length, "-", read)
    q = (f"A book has {length} pages. {name} reads {per_day} pages a day for {days} days. "
         f"How many pages are left to read?")
    return q, [line1, line2], left


def _share_then_more(rng: random.Random) -> Problem:
    obj, (k, each, more) = rng.choice(OBJECTS), _ints(rng, 9, 9, 20)
    line1, share = _eq("Each share", k * each, "/", k)
    line2, total = _eq("With the extra ones", share, "+", more)
    q = (f"{k * each} {obj} are shared equally among {k} children. Then each child gets {more} "
         f"more. How many {obj} does each child have now?")
    return q, [line1, line2], total


ONE_STEP: tuple[Template, ...] = (_add_gets, _sub_gives, _add_together, _sub_compare, _mul_groups,
                                  _mul_price, _div_share, _div_rows)
TWO_STEP: tuple[Template, ...] = (_buy_then_give, _groups_then_add, _earn_then_spend,
                                  _pick_then_split, _book_pages_left, _share_then_more)


def _is_test(question: str) -> bool:
    # hashlib, not hash(): the split of a question must not change with PYTHONHASHSEED.
    digest = hashlib.sha256(question.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % _TEST_BUCKETS == 0


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
    if split not in SPLITS:
        raise DataError(f"arith: unknown split '{split}'; allowed splits: {', '.join(SPLITS)}")
    n = DEFAULT_SIZES[split] if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise DataError(f"arith: n must be a non-negative integer, got {n!r}")
    # Each split has its own stream, seeded by a string so it is stable across Python runs.
    rng = random.Random(f"arith/{split}/{seed}")
    want_test = split == "test"
    rows: list[dict] = []
    seen: set[str] = set()
    for _ in range(50 * n + 1000):  # bounded: the problem space is large but finite
        if len(rows) == n:
            break
        template = rng.choice(ONE_STEP if rng.random() < 0.5 else TWO_STEP)
        question, lines, answer = template(rng)
        if question in seen or _is_test(question) != want_test:
            continue
        seen.add(question)
        working = "\n".join(lines) + f"\n#### {answer}"
        rows.append({"messages": [{"role": "user", "content": question},
                                  {"role": "assistant", "content": working}],
                     "answer": str(answer)})
    if len(rows) < n:
        raise DataError(f"arith: could not generate {n} distinct {split} problems; ask for fewer")
    return rows


_NUMBER = re.compile(r"(?<![\d.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def extract_final_number(text: str) -> str | None:
    """Return the model's final answer as a normalised integer-or-decimal string.

    GSM8K convention: the first number after the last ``####``; without ``####``, the last number
    in the text. Commas are dropped and ``"38.0"`` becomes ``"38"``.

    Example:
        >>> extract_final_number("23 + 15 = 38.\\n#### 38")
        '38'
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
    system_prompt="Solve the problem step by step. End with #### and the final number.",
    description="generated grade-school arithmetic word problems (one and two steps, +-*/), "
                "answers with working and a final '#### N' line",
))
