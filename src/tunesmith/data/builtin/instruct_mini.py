"""``instruct-mini``: generated alpaca-style instructions whose answers can be checked exactly.

Eleven small task types (reverse a word, count letters or vowels, word length, sort numbers or
words, uppercase, largest or smallest number, next number in a sequence, unit conversion, number
words to digits), each with several phrasings; the operand sits either in the instruction or in
``input``. ``output`` is the training target and ``answer`` the exact string an exact-match
evaluation compares with; they are equal, because a small model should answer with the bare result.

Example row:
    {"instruction": "Write the word 'lantern' backwards.", "input": "",
     "output": "nretnal", "answer": "nretnal"}
"""

from __future__ import annotations

import hashlib
import random
from typing import Callable

from tunesmith.data.builtin import HELD_OUT_SEED, BuiltinDataset, register_builtin
from tunesmith.errors import DataError

SPLITS = ("train", "test")
DEFAULT_SIZES = {"train": 2000, "test": 200}
# One problem in five belongs to the test split, decided by a hash of the task and its operand
# (not of the wording), so a test problem is never seen in train under another phrasing.
_TEST_BUCKETS = 5

WORDS = (
    "apple", "banana", "cherry", "garden", "lantern", "window", "pencil", "rocket", "river", "forest",
    "candle", "mirror", "butter", "planet", "silver", "guitar", "button", "castle", "dragon", "meadow",
    "pillow", "tunnel", "wallet", "violin", "pepper", "orange", "basket", "bridge", "blanket", "kitchen",
    "monkey", "needle", "parrot", "rabbit", "saddle", "ticket", "turtle", "velvet", "yellow", "zipper",
    "anchor", "breeze", "cactus", "desert", "engine", "falcon", "glacier", "harbor", "island", "jacket",
    "kettle", "lemon", "magnet", "noodle", "oyster", "puzzle", "quartz", "ribbon", "shadow", "tomato",
    "umbrella", "valley", "walnut", "beacon", "cobalt", "dolphin", "eleven", "feather", "goblet",
    "hammer", "insect", "jungle", "koala", "ladder", "marble", "nectar", "octopus", "paddle", "quiver",
    "rhythm", "salmon", "thunder", "unicorn", "vessel", "whisker", "anthem", "biscuit", "compass",
    "dentist", "elbow", "fossil", "gravel", "hollow", "iceberg", "jigsaw", "kernel", "lobster",
    "mustard", "nutmeg", "orchid", "pebble", "raccoon", "sparrow", "trumpet", "utensil", "vulture",
    "acorn", "bamboo", "canyon", "dinner", "echo", "fabric", "ginger", "helmet", "igloo", "juggle",
    "cloud", "stone", "grape", "horse", "tiger", "music", "paper", "sugar", "water", "clock", "bread",
    "chair", "smile", "storm", "train", "plant", "ocean", "piano", "honey", "night", "zebra", "mango",
)
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
                "eighteen", "nineteen")
TENS_WORDS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
# (from unit, to unit, how many "to" units make one "from" unit)
CONVERSIONS = (("hours", "minutes", 60), ("minutes", "seconds", 60), ("days", "hours", 24),
               ("weeks", "days", 7), ("meters", "centimeters", 100), ("kilometers", "meters", 1000),
               ("kilograms", "grams", 1000), ("feet", "inches", 12), ("dollars", "cents", 100),
               ("years", "months", 12), ("liters", "milliliters", 1000))

Problem = tuple[str, str, str, str]  # (canonical key, instruction, input, answer)
Task = Callable[[random.Random], Problem]


def number_to_words(n: int) -> str:
    """Spell 0..999 in English words, e.g. ``number_to_words(342) == "three hundred forty-two"``."""
    if not 0 <= n <= 999:
        raise ValueError(f"number_to_words covers 0..999, got {n}")  # a generator bug
    if n < 20:
        return NUMBER_WORDS[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return TENS_WORDS[tens] + (f"-{NUMBER_WORDS[ones]}" if ones else "")
    hundreds, rest = divmod(n, 100)
    return f"{NUMBER_WORDS[hundreds]} hundred" + (f" {number_to_words(rest)}" if rest else "")


def _pose(rng: random.Random, inline: tuple[str, ...], separate: tuple[str, ...],
          operand: str) -> tuple[str, str]:
    """Pick a phrasing: ``inline`` ones embed ``{x}``, ``separate`` ones leave it to ``input``."""
    phrasings = [(p, True) for p in inline] + [(p, False) for p in separate]
    text, embed = rng.choice(phrasings)
    return (text.format(x=operand), "") if embed else (text, operand)


def _numbers(rng: random.Random, k: int, high: int) -> list[int]:
    return rng.sample(range(1, high + 1), k)


def _joined(values) -> str:
    return ", ".join(str(v) for v in values)


def _reverse(rng: random.Random) -> Problem:
    word = rng.choice(WORDS)
    instruction, inp = _pose(rng, ("Reverse the word '{x}'.", "Write the word '{x}' backwards.",
                                   "Spell '{x}' backwards."),
                             ("Reverse the letters of the word below.", "Write this word backwards."), word)
    return f"reverse:{word}", instruction, inp, word[::-1]


def _count_letter(rng: random.Random) -> Problem:
    word = rng.choice(WORDS)
    # Mostly letters of the word; one in five is absent, so "0" is a possible answer.
    letter = rng.choice(word) if rng.random() < 0.8 else rng.choice("abcdefghijklmnopqrstuvwxyz")
    instruction, inp = _pose(
        rng, (f"How many times does the letter '{letter}' appear in '{{x}}'?",
              f"Count how many times '{letter}' occurs in the word '{{x}}'."),
        (f"Count the letter '{letter}' in the word below.",), word)
    return f"letter:{word}:{letter}", instruction, inp, str(word.count(letter))


def _length(rng: random.Random) -> Problem:
    word = rng.choice(WORDS)
    instruction, inp = _pose(rng, ("How many letters are in the word '{x}'?", "Count the letters in '{x}'."),
                             ("How many letters does this word have?",), word)
    return f"length:{word}", instruction, inp, str(len(word))


def _vowels(rng: random.Random) -> Problem:
    word = rng.choice(WORDS)
    instruction, inp = _pose(rng, ("How many vowels (a, e, i, o, u) are in the word '{x}'?",
                                   "Count the vowels a, e, i, o and u in '{x}'."),
                             ("Count the vowels (a, e, i, o, u) in this word.",), word)
    return f"vowels:{word}", instruction, inp, str(sum(word.count(v) for v in "aeiou"))


def _sort_numbers(rng: random.Random) -> Problem:
    values = _numbers(rng, rng.randint(3, 6), 99)
    descending = rng.random() < 0.4
    if descending:
        instruction, inp = _pose(rng, ("Sort these numbers from largest to smallest: {x}",
                                       "Put these numbers in descending order: {x}"),
                                 ("Sort the numbers below in descending order, separated by commas.",),
                                 _joined(values))
    else:
        instruction, inp = _pose(rng, ("Sort these numbers from smallest to largest: {x}",
                                       "Put these numbers in ascending order: {x}"),
                                 ("Sort the numbers below in ascending order, separated by commas.",),
                                 _joined(values))
    answer = _joined(sorted(values, reverse=descending))
    return f"sort:{descending}:{values}", instruction, inp, answer


def _sort_words(rng: random.Random) -> Problem:
    words = rng.sample(WORDS, rng.randint(3, 5))
    instruction, inp = _pose(rng, ("Sort these words alphabetically: {x}",
                                   "Put these words in alphabetical order: {x}"),
                             ("Sort the words below in alphabetical order, separated by commas.",),
                             ", ".join(words))
    return f"words:{words}", instruction, inp, ", ".join(sorted(words))


def _uppercase(rng: random.Random) -> Problem:
    phrase = " ".join(rng.sample(WORDS, rng.randint(2, 3)))
    instruction, inp = _pose(rng, ("Convert '{x}' to uppercase.", "Write '{x}' in capital letters."),
                             ("Rewrite the text below in uppercase.", "Turn this text into capital letters."),
                             phrase)
    return f"upper:{phrase}", instruction, inp, phrase.upper()


def _extreme(rng: random.Random) -> Problem:
    values = _numbers(rng, rng.randint(3, 6), 999)
    if rng.random() < 0.5:
        instruction, inp = _pose(rng, ("Which number is the largest: {x}?",
                                       "What is the biggest of these numbers: {x}?"),
                                 ("Give the largest number in this list.",), _joined(values))
        return f"max:{values}", instruction, inp, str(max(values))
    instruction, inp = _pose(rng, ("Which number is the smallest: {x}?",
                                   "What is the lowest of these numbers: {x}?"),
                             ("Give the smallest number in this list.",), _joined(values))
    return f"min:{values}", instruction, inp, str(min(values))


def _sequence(rng: random.Random) -> Problem:
    if rng.random() < 0.75:  # arithmetic: start 1..40, step 2..9
        start, step = rng.randint(1, 40), rng.randint(2, 9)
        terms = [start + step * i for i in range(5)]
    else:  # doubling or tripling, small enough to stay under 1000
        start, ratio = rng.randint(1, 9), rng.choice((2, 3))
        terms = [start * ratio ** i for i in range(5)]
    shown = _joined(terms[:4])
    instruction, inp = _pose(rng, ("What number comes next: {x}?",
                                   "Give the next number in the sequence {x}."),
                             ("Continue the sequence below with the next number.",), shown)
    return f"seq:{shown}", instruction, inp, str(terms[4])


def _convert(rng: random.Random) -> Problem:
    source, target, factor = rng.choice(CONVERSIONS)
    amount = rng.randint(2, 12)
    instruction, inp = _pose(rng, (f"How many {target} are in {{x}}?",
                                   f"Convert {{x}} to {target}. Answer with a number only."),
                             (f"How many {target} is the amount below?",), f"{amount} {source}")
    return f"convert:{amount}:{source}:{target}", instruction, inp, str(amount * factor)


def _word_to_number(rng: random.Random) -> Problem:
    n = rng.randint(1, 999)
    instruction, inp = _pose(rng, ("Write '{x}' as a number.", "What number is '{x}'? Answer in digits."),
                             ("Convert these words to a number written with digits.",), number_to_words(n))
    return f"number:{n}", instruction, inp, str(n)


TASKS: tuple[Task, ...] = (_reverse, _count_letter, _length, _vowels, _sort_numbers, _sort_words,
                           _uppercase, _extreme, _sequence, _convert, _word_to_number)


def _is_test(key: str) -> bool:
    # hashlib, not hash(): the split of a problem must not change with PYTHONHASHSEED.
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % _TEST_BUCKETS == 0


def build_instruct_mini(split: str, seed: int = 0, n: int | None = None) -> list[dict]:
    """Generate ``n`` distinct checkable instructions for ``split``.

    Args:
        split: ``"train"`` or ``"test"``.
        seed: Same (split, seed, n) gives the same rows; a shorter ``n`` gives a prefix.
        n: Number of rows; defaults to 2000 for train and 200 for test.

    Returns:
        Rows like ``{"instruction": "Sort these numbers from smallest to largest: 42, 7, 19",
        "input": "", "output": "7, 19, 42", "answer": "7, 19, 42"}``.

    Raises:
        DataError: If ``split`` is unknown or ``n`` is negative or too large.
    """
    if split not in SPLITS:
        raise DataError(f"instruct-mini: unknown split '{split}'; allowed splits: {', '.join(SPLITS)}")
    n = DEFAULT_SIZES[split] if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise DataError(f"instruct-mini: n must be a non-negative integer, got {n!r}")
    rng = random.Random(f"instruct-mini/{split}/{seed}")
    want_test = split == "test"
    rows: list[dict] = []
    seen: set[tuple[str, str]] = set()
    for _ in range(50 * n + 1000):  # bounded: some tasks have only a few hundred problems
        if len(rows) == n:
            break
        key, instruction, inp, answer = rng.choice(TASKS)(rng)
        if (instruction, inp) in seen or _is_test(key) != want_test:
            continue
        seen.add((instruction, inp))
        rows.append({"instruction": instruction, "input": inp, "output": answer, "answer": answer})
    if len(rows) < n:
        raise DataError(f"instruct-mini: could not generate {n} distinct {split} rows; ask for fewer")
    return rows


register_builtin(BuiltinDataset(
    name="instruct-mini",
    build=build_instruct_mini,
    description="generated alpaca-style instructions with exactly checkable answers (reverse, count, "
                "sort, uppercase, largest, next in sequence, unit conversion, words to digits)",
    metric="exact_match",
    default_train_size=DEFAULT_SIZES["train"],
    default_test_size=DEFAULT_SIZES["test"],
    format="alpaca",
    held_out_seed=HELD_OUT_SEED,
))
