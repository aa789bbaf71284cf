"""Tests for the generated ``arith`` dataset and the GSM8K-style answer extractor."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from tunesmith.data.builtin import BUILTIN_DATASETS
from tunesmith.data.builtin.arith import build_arith, extract_final_number
from tunesmith.errors import DataError

EQUATION = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)\.$")
# One distinctive phrase per question template; every question must match exactly one.
PHRASINGS = {
    "add_gets": r"has \d+ \w+ and gets \d+ more\.",
    "sub_gives": r"had \d+ \w+ and gave \d+ of them to",
    "add_together": r"do they have together\?",
    "sub_compare": r"How many more pages did",
    "mul_groups": r"^There are \d+ \w+ with \d+ \w+ in each\.",
    "mul_price": r"^One .+ costs \d+ dollars\.",
    "div_share": r"equally among \d+ friends\.",
    "div_rows": r"chairs in rows of",
    "buy_then_give": r"and buys \d+ more, then gives",
    "groups_then_add": r"in each and \d+ loose",
    "earn_then_spend": r"dollars an hour and works",
    "pick_then_split": r"They split them equally",
    "book_pages_left": r"^A book has \d+ pages\.",
    "share_then_more": r"Then each child gets",
}


@pytest.fixture(scope="module")
def train_rows() -> list[dict]:
    return build_arith("train", seed=0)


@pytest.fixture(scope="module")
def test_rows() -> list[dict]:
    return build_arith("test", seed=0)


def question(row: dict) -> str:
    return row["messages"][0]["content"]


def working(row: dict) -> str:
    return row["messages"][1]["content"]


def phrasing(text: str) -> str:
    hits = [name for name, pattern in PHRASINGS.items() if re.search(pattern, text)]
    assert len(hits) == 1, (text, hits)
    return hits[0]


def test_default_sizes_and_row_shape(train_rows, test_rows):
    assert len(train_rows) == 2000 and len(test_rows) == 200
    for row in train_rows[:50] + test_rows[:50]:
        assert set(row) == {"messages", "answer"}
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert isinstance(row["answer"], str) and row["answer"].isdigit()


def test_deterministic():
    assert build_arith("train", seed=3, n=300) == build_arith("train", seed=3, n=300)
    assert build_arith("test", seed=3, n=100) == build_arith("test", seed=3, n=100)
    assert build_arith("train", seed=3, n=100) != build_arith("train", seed=4, n=100)


def test_test_split_is_a_stable_prefix(test_rows):
    assert build_arith("test", seed=0, n=50) == test_rows[:50]
    assert build_arith("test", seed=0, n=500)[:200] == test_rows


def test_splits_disjoint_and_no_duplicates(train_rows, test_rows):
    train_q = [question(r) for r in train_rows]
    test_q = [question(r) for r in build_arith("test", seed=0, n=1000)]
    assert len(set(train_q)) == len(train_q)
    assert len(set(test_q)) == len(test_q)
    assert not set(train_q) & set(test_q)
    assert not set(train_q) & {question(r) for r in test_rows}
    assert not {question(r) for r in build_arith("train", seed=1, n=500)} & set(test_q)  # any seed


def test_answers_match_working(train_rows, test_rows):
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
    for row in train_rows + test_rows:
        *lines, final = working(row).split("\n")
        assert final == f"#### {row['answer']}"
        assert 1 <= len(lines) <= 2
        previous = None
        for line in lines:
            match = EQUATION.search(line)
            assert match, line
            a, op, b, c = int(match[1]), match[2], int(match[3]), int(match[4])
            if op == "/":
                assert b != 0 and a % b == 0 and a // b == c, line
            else:
                assert ops[op](a, b) == c, line
            assert c >= 0
            if previous is not None:  # a two-step problem reuses the first result
                assert a == previous or b == previous, working(row)
            previous = c
        assert str(previous) == row["answer"]
        assert extract_final_number(working(row)) == row["answer"]


def test_numbers_stay_small(train_rows):
    for row in train_rows:
        for a, op, b, _ in (EQUATION.search(l).groups() for l in working(row).split("\n")[:-1]):
            if op == "*":
                assert int(a) <= 12 and int(b) <= 12
            elif op == "/":
                assert int(b) <= 12 and int(a) // int(b) <= 12
        assert len(working(row)) < 160  # roughly under 40 tokens


def test_mix_of_steps_and_phrasings(train_rows, test_rows):
    steps = Counter(working(r).count("\n") for r in train_rows)
    assert set(steps) == {1, 2}
    assert 0.4 < steps[1] / len(train_rows) < 0.6
    used = Counter(phrasing(question(r)) for r in train_rows)
    assert len(used) == len(PHRASINGS) >= 8
    assert len({phrasing(question(r)) for r in test_rows}) >= 8
    assert len({re.search(r"\d+ (\w+)", question(r))[1] for r in train_rows}) >= 8  # varied objects


@pytest.mark.parametrize("split", ["validation", "", "TEST"])
def test_bad_split_raises(split):
    with pytest.raises(DataError, match="train, test") as info:
        build_arith(split)
    assert f"'{split}'" in str(info.value)


def test_bad_n_raises():
    with pytest.raises(DataError):
        build_arith("train", n=-1)
    assert build_arith("train", n=0) == []


def test_registered():
    dataset = BUILTIN_DATASETS.get("arith")
    assert dataset.build is build_arith
    assert dataset.splits == ("train", "test") and dataset.metric == "exact_match"
    assert dataset.build("test", 0, 5) == build_arith("test", seed=0, n=5)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Mia starts with 23: 23 + 15 = 38.\n#### 38", "38"),
        ("#### 12\nthen 5 + 5 = 10", "12"),  # first number after the last ####
        ("#### 4\n#### 7 apples", "7"),
        ("So the answer is 38.", "38"),
        ("23 + 15 = 38", "38"),
        ("She has 1,234 marbles", "1234"),
        ("#### 1,000,000", "1000000"),
        ("The total is 38.0", "38"),
        ("It costs 2.50 dollars", "2.5"),
        ("The change is -3", "-3"),
        ("#### -3", "-3"),
        ("no numbers here", None),
        ("####", None),
        ("", None),
    ],
)
def test_extract_final_number(text, expected):
    assert extract_final_number(text) == expected
