"""Tests for the generated ``arith`` dataset and the GSM8K-style answer extractor."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from tunesmith.data.builtin import BUILTIN_DATASETS
from tunesmith.data.builtin import arith_wordings as W
from tunesmith.data.builtin import arith
from tunesmith.data.builtin.arith import HELD_OUT_START, build_arith, extract_final_number, held_out_order
from tunesmith.errors import DataError

EQUATION = re.compile(r"^(\d+) ([-+*/]) (\d+) = (\d+)\.$")
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


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


def equations(row: dict) -> list[tuple[int, str, int, int]]:
    return [(int(m[1]), m[2], int(m[3]), int(m[4]))
            for m in (EQUATION.match(line) for line in working(row).split("\n")[:-1])]


def fill_pattern(wording: str) -> re.Pattern:
    """A regex that matches ``wording`` with any value in its placeholders."""
    parts = re.split(r"(\{\w+\})", wording)
    return re.compile("".join(".+?" if p.startswith("{") else re.escape(p) for p in parts))


def pools() -> dict[str, W.Pool]:
    return {name: pool for name, pool in vars(W).items() if isinstance(pool, W.Pool)}


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
    assert not {question(r) for r in build_arith("train", seed=1, n=500)} & set(test_q)  # any seed


def test_answers_match_working(train_rows, test_rows):
    for row in train_rows + test_rows:
        *lines, final = working(row).split("\n")
        assert final == f"#### {row['answer']}"
        assert 1 <= len(lines) <= 4
        values = []
        for line in lines:
            match = EQUATION.match(line)
            assert match, line
            a, op, b, c = int(match[1]), match[2], int(match[3]), int(match[4])
            if op == "/":
                assert b != 0 and a % b == 0 and a // b == c, line
            else:
                assert OPS[op](a, b) == c, line
            assert c >= 0
            if values:  # every later line builds on an earlier result, or is a product fed to one
                assert a in values or b in values or op == "*", working(row)
            values.append(c)
        assert str(values[-1]) == row["answer"]
        assert extract_final_number(working(row)) == row["answer"]


def test_numbers_stay_small(train_rows, test_rows):
    for row in train_rows + test_rows:
        for a, op, b, c in equations(row):
            if op == "*":
                assert b <= 9 and (a <= 9 or b <= 4), (a, op, b)
            elif op == "/":
                assert b <= 9
        assert len(working(row)) < 120  # roughly under 60 tokens


def test_test_split_uses_only_held_out_wordings_entities_and_orders(train_rows, test_rows):
    """The held-out score measures the skill: no test wording, name or object is ever trained on."""
    for name, pool in pools().items():
        assert pool.train and pool.test and not set(pool.train) & set(pool.test), name
    train_text = " ".join(question(r) for r in train_rows)
    test_text = " ".join(question(r) for r in test_rows)
    for pool in (W.NAMES, W.OBJECTS):
        assert not any(re.search(rf"\b{re.escape(w)}\b", train_text) for w in pool.test)
        assert any(re.search(rf"\b{re.escape(w)}\b", test_text) for w in pool.test)
    sentence_pools = [p for n, p in pools().items() if n not in ("NAMES", "OBJECTS", "BOXES", "ITEMS")]
    for rows, split in ((train_rows[:400], "train"), (test_rows, "test")):
        other = "test" if split == "train" else "train"
        for row in rows:
            for pool in sentence_pools:
                for wording in pool.part(other):
                    assert not fill_pattern(wording).search(question(row)), (wording, question(row))
    # Starting amounts: the test split starts from the held-out band, training never does.
    low, high = HELD_OUT_START
    for split in ("train", "test"):
        rng = random.Random(split)
        starts = set()
        for _ in range(3000):
            problem = arith._Problem(rng, split, money=rng.random() < 0.3)
            arith._start(problem)
            if not problem.lines:  # a plain start, not groups times a count
                starts.add(problem.value)
        assert starts == (set(range(low, high + 1)) if split == "test"
                          else set(range(3, 61)) - set(range(low, high + 1)))


def test_orders_of_operations_are_held_out():
    assert held_out_order("-+") != held_out_order("+-") or held_out_order("++") != held_out_order("+-")
    assert not held_out_order("+") and not held_out_order("/")  # one step has no order


def test_mix_of_chains_wordings_and_numbers(train_rows, test_rows):
    changes = Counter(len(equations(r)) for r in train_rows)
    assert {1, 2, 3, 4} <= set(changes)
    assert 0.2 < changes[1] / len(train_rows) < 0.45
    ops = Counter(op for r in train_rows for _, op, _, _ in equations(r))
    assert all(ops[op] > 200 for op in "+-*/")
    assert len({r["messages"][0]["content"].split()[0] for r in train_rows}) >= 25  # varied openings
    with_words = [r for r in train_rows if any(w in question(r).split() for w in W.WORDS[2:])]
    assert 0.05 < len(with_words) / len(train_rows) < 0.5  # some numbers written as words
    assert len({len(equations(r)) for r in test_rows}) >= 3


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
