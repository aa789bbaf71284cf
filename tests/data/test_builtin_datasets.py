"""Tests for the generated ``sentiment``, ``paraphrase`` and ``instruct-mini`` datasets and for
``register_dataset``."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from tunesmith.data.builtin import BUILTIN_DATASETS, register_dataset
from tunesmith.errors import ConfigError, DataError

GENERATED = ("sentiment", "paraphrase", "instruct-mini")
COLUMNS = {"sentiment": {"text", "label"}, "paraphrase": {"sentence1", "sentence2", "label"},
           "instruct-mini": {"instruction", "input", "output", "answer"}}
SIZES = {"sentiment": (2000, 400), "paraphrase": (6000, 400), "instruct-mini": (2000, 200)}


def build(name: str, split: str, seed: int = 0, n: int | None = None) -> list[dict]:
    return BUILTIN_DATASETS.get(name).build(split, seed, n)


def key(row: dict) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in row.items() if k not in ("label", "output", "answer")))


@pytest.fixture(scope="module")
def rows() -> dict[tuple[str, str], list[dict]]:
    return {(name, split): build(name, split) for name in GENERATED for split in ("train", "test")}


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.lower()))


# --- shared properties ----------------------------------------------------------------------

@pytest.mark.parametrize("name", GENERATED)
def test_metadata_and_default_sizes(name, rows):
    dataset = BUILTIN_DATASETS.get(name)
    assert (dataset.default_train_size, dataset.default_test_size) == SIZES[name]
    assert (len(rows[name, "train"]), len(rows[name, "test"])) == SIZES[name]
    for row in rows[name, "train"][:100] + rows[name, "test"][:100]:
        assert set(row) == COLUMNS[name]


@pytest.mark.parametrize("name", GENERATED)
def test_deterministic_and_prefix_stable(name, rows):
    assert build(name, "train", seed=3, n=300) == build(name, "train", seed=3, n=300)
    assert build(name, "train", seed=3, n=100) != build(name, "train", seed=4, n=100)
    assert build(name, "test", seed=0, n=50) == rows[name, "test"][:50]


@pytest.mark.parametrize("name", GENERATED)
def test_splits_disjoint_and_no_duplicates(name, rows):
    train = [key(r) for r in rows[name, "train"]]
    test = [key(r) for r in build(name, "test", n=800)]  # more than the default: still disjoint
    assert len(set(train)) == len(train) and len(set(test)) == len(test)
    assert not set(train) & set(test)


@pytest.mark.parametrize("name", GENERATED)
def test_bad_split_and_size_are_data_errors(name):
    with pytest.raises(DataError, match="unknown split 'validation'"):
        build(name, "validation")
    with pytest.raises(DataError, match="non-negative"):
        build(name, "train", n=-1)


def test_arith_metadata_unchanged():
    arith = BUILTIN_DATASETS.get("arith")
    assert (arith.task, arith.format, arith.label_names) == ("causal_lm", "auto", ())
    assert arith.metric == "exact_match"


# --- sentiment ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sentiment", "paraphrase"])
def test_classification_labels_are_balanced_ints(name, rows):
    dataset = BUILTIN_DATASETS.get(name)
    assert dataset.task == "sequence_classification" and dataset.metric == "accuracy"
    assert len(dataset.label_names) == 2
    for split in ("train", "test"):
        labels = [r["label"] for r in rows[name, split]]
        assert all(type(label) is int for label in labels)
        assert Counter(labels) == {0: len(labels) // 2, 1: len(labels) // 2}
        assert Counter(labels[:100]) == {0: 50, 1: 50}  # even prefixes are balanced too


def test_sentiment_no_single_word_decides_the_label(rows):
    train = rows["sentiment", "train"]
    n, n_pos = len(train), sum(r["label"] for r in train)
    present, present_pos = Counter(), Counter()
    for r in train:
        for w in words(r["text"]):
            present[w] += 1
            present_pos[w] += r["label"]
    # Best rule of the form "label = y if the word is present, else 1 - y".
    best = max(max(present_pos[w] + (n - n_pos) - (present[w] - present_pos[w]),
                   (present[w] - present_pos[w]) + n_pos - present_pos[w]) / n for w in present)
    assert best < 0.65


def test_sentiment_has_negation_and_mixed_clauses_in_both_labels(rows):
    train = rows["sentiment", "train"]
    for label in (0, 1):
        texts = [r["text"] for r in train if r["label"] == label]
        assert sum(" not " in t for t in texts) > 0.15 * len(texts)
        mixed = [t for t in texts if ", but " in t or t.startswith(("Although", "Even though"))]
        assert len(mixed) > 0.1 * len(texts)
    assert any("not bad at all" in r["text"] for r in train if r["label"] == 1)


# --- paraphrase -----------------------------------------------------------------------------

def jaccard(a: str, b: str) -> float:
    x, y = words(a), words(b)
    return len(x & y) / len(x | y)


@pytest.mark.parametrize("split", ["train", "test"])
def test_paraphrase_word_overlap_does_not_give_the_label(rows, split):
    pairs = [(jaccard(r["sentence1"], r["sentence2"]), r["label"]) for r in rows["paraphrase", split]]
    pos = [j for j, label in pairs if label == 1]
    neg = [j for j, label in pairs if label == 0]
    assert sum(neg) / len(neg) >= sum(pos) / len(pos) - 0.05
    # A logistic model on one feature is a threshold; try every threshold in both directions.
    best = max(sum((j >= t) == bool(label) if up else (j < t) == bool(label) for j, label in pairs)
               for t in sorted({j for j, _ in pairs}) for up in (True, False)) / len(pairs)
    assert best < 0.70


def test_paraphrase_pairs_differ_and_negatives_keep_high_overlap(rows):
    train = rows["paraphrase", "train"]
    assert all(r["sentence1"] != r["sentence2"] for r in train)
    negatives = [jaccard(r["sentence1"], r["sentence2"]) for r in train if r["label"] == 0]
    assert sorted(negatives)[len(negatives) // 2] >= 0.7  # the median negative shares most words
    # The classic traps are all present among negatives.
    s2 = [(r["sentence1"], r["sentence2"]) for r in train if r["label"] == 0]
    assert any(words(a) == words(b) for a, b in s2)  # same words, other meaning (swapped roles)
    assert any(("not" in words(b)) != ("not" in words(a)) for a, b in s2)


def test_paraphrase_test_pairs_name_held_out_entities_that_training_never_mentions(rows):
    from tunesmith.data.builtin.paraphrase import FRAMES, HELD_OUT, SPLIT_NOTE

    # Every wording (synonyms included) of each held-out entity.
    wordings = {w for frame in FRAMES for entity in frame.agents + frame.things if entity[0] in HELD_OUT
                for w in entity}
    assert len(wordings) > len(HELD_OUT)

    def named(row: dict) -> set[str]:
        text = f"{row['sentence1']} {row['sentence2']}".lower()
        return {w for w in wordings if re.search(rf"\b{re.escape(w.lower())}\b", text)}

    assert not any(named(r) for r in rows["paraphrase", "train"])
    assert all(named(r) for r in rows["paraphrase", "test"])
    assert len(set().union(*(named(r) for r in rows["paraphrase", "test"]))) >= 10
    assert "Priya" in SPLIT_NOTE and BUILTIN_DATASETS.get("paraphrase").split_note == SPLIT_NOTE


# --- instruct-mini: every answer recomputed from the text ------------------------------------

ONES = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve "
                                   "thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split())}
TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split())
        if i > 1}
FACTORS = {("hours", "minutes"): 60, ("minutes", "seconds"): 60, ("days", "hours"): 24, ("weeks", "days"): 7,
           ("meters", "centimeters"): 100, ("kilometers", "meters"): 1000, ("kilograms", "grams"): 1000,
           ("feet", "inches"): 12, ("dollars", "cents"): 100, ("years", "months"): 12,
           ("liters", "milliliters"): 1000}


def parse_number_words(text: str) -> int:
    total = 0
    for part in text.replace("-", " ").split():
        if part == "hundred":
            total *= 100
        else:
            total += ONES.get(part, TENS.get(part, 0))
            assert part in ONES or part in TENS, part
    return total


def expected_answer(instruction: str, given: str) -> str:
    """Recompute the answer from the instruction and input alone."""
    quoted = re.findall(r"'([^']+)'", instruction)
    operand = given or (quoted[-1] if quoted else instruction.rsplit(": ", 1)[-1].rstrip("?."))
    low = instruction.lower()
    numbers = [int(x) for x in re.findall(r"\d+", operand)]
    if "backwards" in low or "reverse" in low:
        return operand[::-1]
    if "uppercase" in low or "capital letters" in low:
        return operand.upper()
    if "vowel" in low:
        return str(sum(ch in "aeiou" for ch in operand))
    if "letter '" in low or re.search(r"many times '", low):
        letter = quoted[0]
        return str(operand.count(letter))
    if "letters" in low:
        return str(len(operand))
    if "alphabetical" in low:
        return ", ".join(sorted(operand.split(", ")))
    if "sort" in low or "order" in low:
        descending = "descending" in low or "largest to smallest" in low
        return ", ".join(map(str, sorted(numbers, reverse=descending)))
    if "largest" in low or "biggest" in low:
        return str(max(numbers))
    if "smallest" in low or "lowest" in low:
        return str(min(numbers))
    if "next" in low or "sequence" in low:
        steps = {b - a for a, b in zip(numbers, numbers[1:])}
        if len(steps) == 1:
            return str(numbers[-1] + steps.pop())
        (ratio,) = {b // a for a, b in zip(numbers, numbers[1:])}
        return str(numbers[-1] * ratio)
    unit = re.search(r"(\d+) ([a-z]+)", operand)
    target = re.search(r"how many ([a-z]+)|to ([a-z]+)\.", low)
    if unit and target:
        return str(int(unit.group(1)) * FACTORS[unit.group(2), target.group(1) or target.group(2)])
    if "number" in low or "digits" in low:
        return str(parse_number_words(operand))
    raise AssertionError(f"unrecognised instruction: {instruction!r}")


def test_instruct_mini_answers_recomputed(rows):
    kinds = Counter()
    for row in rows["instruct-mini", "train"] + rows["instruct-mini", "test"]:
        assert row["output"] == row["answer"]
        assert row["answer"] == expected_answer(row["instruction"], row["input"]), row
        kinds[row["instruction"].split()[0]] += 1
    assert len(kinds) >= 10  # many phrasings, not one template


def test_instruct_mini_is_alpaca_with_exact_match():
    dataset = BUILTIN_DATASETS.get("instruct-mini")
    assert (dataset.format, dataset.metric, dataset.task) == ("alpaca", "exact_match", "causal_lm")


# --- register_dataset -----------------------------------------------------------------------

@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made in a test disappear after it."""
    monkeypatch.setattr(BUILTIN_DATASETS, "_items", dict(BUILTIN_DATASETS._items))


def test_register_dataset_round_trip(scratch_registry):
    from tunesmith.data.sources import load_rows

    @register_dataset("colors-test", metric="accuracy", default_train_size=4, default_test_size=2,
                      label_names=["warm", "cool"], task="sequence_classification", format="classification")
    def build_colors(split, seed, n):
        """Colors labelled warm (0) or cool (1)."""
        names = ["red", "blue", "orange", "green"] if split == "train" else ["yellow", "teal"]
        return [{"text": c, "label": i % 2} for i, c in enumerate(names[:n])]

    dataset = BUILTIN_DATASETS.get("colors-test")
    assert build_colors("train", 0, 1) == [{"text": "red", "label": 0}]  # the function is unchanged
    assert dataset.description == "Colors labelled warm (0) or cool (1)."
    assert dataset.label_names == ("warm", "cool") and dataset.metric == "accuracy"
    assert len(dataset.build("train", 0, None)) == 4 and len(dataset.build("test", 0, None)) == 2
    assert [r for r, _ in load_rows("colors-test", "test")] == [{"text": "yellow", "label": 0},
                                                                {"text": "teal", "label": 1}]
    with pytest.raises(DataError, match="unknown split 'dev'"):
        dataset.build("dev", 0, None)


def test_register_dataset_rejects_duplicates_and_unknown_fields(scratch_registry):
    with pytest.raises(ConfigError, match="'sentiment' is already registered"):
        register_dataset("sentiment")(lambda split, seed, n: [])
    with pytest.raises(ConfigError, match="unknown field 'metrc'. Did you mean 'metric'"):
        register_dataset("other-test", metrc="accuracy")
    assert "other-test" not in BUILTIN_DATASETS


def test_register_dataset_checks_rows(scratch_registry):
    register_dataset("broken-test")(lambda split, seed, n: "not rows")
    with pytest.raises(DataError, match="list of dicts"):
        BUILTIN_DATASETS.get("broken-test").build("train", 0, 3)


def test_every_builtin_is_scored_on_the_same_held_out_rows_whatever_the_seed(tmp_path):
    """A run with train.seed=7 and one with the default 42 ask the same held-out rows (built-in
    splits are disjoint whatever seeds draw them), while their training rows differ; a user's
    dataset draws its test split with the run's seed unless it declares a held_out_seed."""
    from tunesmith.api.data_entry import load_example_sets
    from tunesmith.config.schema import DataConfig
    from tunesmith.data.builtin import HELD_OUT_SEED
    from tunesmith.data.sources import load_rows

    assert HELD_OUT_SEED == 42  # the default train.seed: runs with it keep their held-out rows
    for name in BUILTIN_DATASETS.names():
        dataset = BUILTIN_DATASETS.get(name)
        if "test" not in dataset.splits or dataset.held_out_seed is None:
            continue
        assert load_rows(name, "test", 7) == load_rows(name, "test", 42), name
    assert {n for n in BUILTIN_DATASETS.names() if BUILTIN_DATASETS.get(n).held_out_seed == HELD_OUT_SEED} >= {
        "arith", "arith-pref", "arith-kto", "arith-prompts", "sentiment", "paraphrase", "instruct-mini", "facts"}
    seven, held_seven, _ = load_example_sets(DataConfig(train="arith", max_samples=50), seed=7)
    default, held_default, _ = load_example_sets(DataConfig(train="arith", max_samples=50), seed=42)
    assert held_seven == held_default and seven.examples != default.examples
    notes = load_example_sets(DataConfig(train="arith", max_samples=5), seed=7)[2]
    assert "arith test split: drawn with seed 42 whatever train.seed is (train.seed=7 draws the training rows)" in \
        " ".join(notes)
    assert "whatever train.seed" not in " ".join(load_example_sets(DataConfig(train="arith", max_samples=5), seed=42)[2])

    @register_dataset("seeded-user-rows", default_train_size=4, default_test_size=3)
    def seeded(split, seed, n):
        return [{"instruction": f"{split} {seed} {i}", "output": "x"} for i in range(n)]

    @register_dataset("fixed-user-rows", default_train_size=4, default_test_size=3, held_out_seed=5)
    def fixed(split, seed, n):
        return [{"instruction": f"{split} {seed} {i}", "output": "x"} for i in range(n)]

    with pytest.raises(ConfigError, match=r"register_dataset\('odd-rows'\): held_out_seed='42' is not allowed"):
        register_dataset("odd-rows", held_out_seed="42")
    try:
        assert load_rows("seeded-user-rows", "test", 7)[0][0]["instruction"] == "test 7 0"
        assert load_rows("fixed-user-rows", "test", 7)[0][0]["instruction"] == "test 5 0"
        assert load_rows("fixed-user-rows", "train", 7)[0][0]["instruction"] == "train 7 0"
    finally:
        BUILTIN_DATASETS.remove("seeded-user-rows")
        BUILTIN_DATASETS.remove("fixed-user-rows")
