"""``sentiment``: generated IMDB-style movie and product reviews labelled negative (0) or positive (1).

Reviews are built so that no single word decides the label: a positive review may say "not bad
at all" or concede that "the ending was predictable", and a negative one may call the acting
"superb" before saying the film is "far from entertaining". A classifier has to learn sentiment
words, negation and which clause carries the verdict. Labels alternate in shuffled pairs, so any
even-length prefix is exactly balanced.

Example row:
    {"text": "The plot was predictable, but overall this movie was not bad at all. "
             "I'd recommend it to anyone.",
     "label": 1}
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from tunesmith.data.builtin import HELD_OUT_SEED, BuiltinDataset, register_builtin
from tunesmith.errors import DataError

SPLITS = ("train", "test")
DEFAULT_SIZES = {"train": 2000, "test": 400}
LABEL_NAMES = ("negative", "positive")
# One review in five belongs to the test split (decided by a hash of its text), so the splits
# are disjoint whatever sizes are asked for.
_TEST_BUCKETS = 5

Phrase = tuple[str, bool]  # (noun phrase, is plural)


@dataclass(frozen=True)
class Domain:
    """Vocabulary of one kind of review; index 0/1 of a pair is negative/positive."""

    subjects: tuple[Phrase, ...]
    aspects: tuple[Phrase, ...]
    adjectives: tuple[tuple[str, ...], tuple[str, ...]]
    experiences: tuple[tuple[str, ...], tuple[str, ...]]
    verdicts: tuple[tuple[str, ...], tuple[str, ...]]
    fillers: tuple[str, ...]
    past_tense: bool  # movies are told in the past ("was"), products mostly in the present


GENERAL_NEG = ("terrible", "awful", "dreadful", "disappointing", "mediocre", "poor", "weak",
               "sloppy", "lousy", "bad", "dull", "forgettable")
GENERAL_POS = ("excellent", "wonderful", "superb", "fantastic", "delightful", "impressive",
               "outstanding", "terrific", "great", "lovely", "solid", "brilliant")
# Verdicts shared by both domains; "{n}" is a score out of 10 drawn from the label's range.
SHARED_VERDICTS = (
    ("I would not recommend it.", "I can't recommend it.", "I really wanted to like it.",
     "I expected a lot more.", "{n} out of 10.", "Honestly, a letdown.", "Avoid it."),
    ("I'd recommend it to anyone.", "I can't recommend it enough.", "Highly recommended.",
     "I wouldn't hesitate to recommend it.", "{n} out of 10.", "Honestly, a treat.",
     "Don't miss it."),
)
SCORES = ((1, 2, 3, 4), (7, 8, 9, 10))

MOVIES = Domain(
    subjects=(("this movie", False), ("the film", False), ("this sequel", False),
              ("the documentary", False), ("this thriller", False), ("the comedy", False),
              ("this animated film", False), ("the remake", False), ("the new season", False),
              ("this musical", False)),
    aspects=(("the acting", False), ("the plot", False), ("the soundtrack", False),
             ("the pacing", False), ("the dialogue", False), ("the ending", False),
             ("the cinematography", False), ("the script", False), ("the cast", False),
             ("the visual effects", True), ("the fight scenes", True), ("the jokes", True)),
    adjectives=(GENERAL_NEG + ("boring", "predictable", "lifeless", "confusing", "tedious", "pointless"),
                GENERAL_POS + ("gripping", "moving", "hilarious", "heartfelt", "clever", "entertaining")),
    experiences=(
        ("I hated every minute of it.", "I could not wait for it to end.", "I kept checking my watch.",
         "I nearly fell asleep halfway through.", "I didn't enjoy a single scene.",
         "It never held my attention.", "I walked out before the end.", "Nothing in it made me care."),
        ("I loved every minute of it.", "I didn't want it to end.", "I never once checked my watch.",
         "I couldn't stop smiling.", "It kept me hooked until the last scene.",
         "I didn't expect to enjoy it this much.", "I was never bored.", "It stayed with me for days."),
    ),
    verdicts=(("Skip it.", "Not worth the ticket.", "I wouldn't watch it again.",
               "A total waste of time."),
              ("Worth every minute.", "Go and see it.", "I would gladly watch it again.",
               "Time well spent.")),
    fillers=("I saw it at a late showing on Friday.", "My friends picked it for movie night.",
             "I watched it on a long flight.", "It runs just under two hours.",
             "I went in knowing nothing about it.", "I streamed it over the weekend.",
             "My sister dragged me along to see it.", "I had read the book first."),
    past_tense=True,
)

PRODUCTS = Domain(
    subjects=(("these headphones", True), ("this blender", False), ("the laptop", False),
              ("this vacuum", False), ("the backpack", False), ("this phone case", False),
              ("the coffee maker", False), ("these running shoes", True), ("the desk lamp", False),
              ("this keyboard", False), ("the air fryer", False), ("these kitchen knives", True)),
    aspects=(("the battery life", False), ("the build quality", False), ("the sound", False),
             ("the price", False), ("the customer service", False), ("the design", False),
             ("the instructions", True), ("the packaging", False), ("the setup", False),
             ("the buttons", True), ("the materials", True)),
    adjectives=(GENERAL_NEG + ("flimsy", "unreliable", "uncomfortable", "cheaply made", "clunky", "useless"),
                GENERAL_POS + ("sturdy", "reliable", "comfortable", "well made", "handy", "sleek")),
    experiences=(
        ("It stopped working after a week.", "It broke on the second day.", "I regret buying it.",
         "It never worked properly.", "Nothing about it works the way it should.",
         "It doesn't do what it promises.", "I returned it within a week.", "It failed me twice already."),
        ("It works exactly as described.", "I use it every day and love it.",
         "It hasn't given me a single problem.", "I have zero complaints.", "It never lets me down.",
         "It does everything it promises.", "I don't regret buying it for a second.",
         "It still works like new."),
    ),
    verdicts=(("Save your money.", "Not worth the price.", "I wouldn't buy it again.",
               "A total waste of money."),
              ("Worth every penny.", "Buy it.", "I would gladly buy it again.", "Money well spent.")),
    fillers=("I ordered it last month.", "It arrived two days after I ordered it.",
             "I bought it as a gift for my dad.", "I have had it for about three weeks.",
             "I use it mostly at the office.", "It comes in three colors.",
             "I picked it up on sale.", "A friend suggested it to me."),
    past_tense=False,
)
DOMAINS = (MOVIES, PRODUCTS)

INTENSIFIERS = ("", "", "really ", "truly ", "absolutely ", "pretty ", "incredibly ", "quite ")
# Predicates that carry label y using a word of the opposite polarity: y=1 negates a negative
# word ("not bad at all"), y=0 negates a positive one ("not exactly clever").
NEGATED = (
    ("not {adj}", "not very {adj}", "far from {adj}", "anything but {adj}", "hardly {adj}",
     "not exactly {adj}", "not nearly as {adj} as I hoped", "never {adj}"),
    ("not {adj} at all", "anything but {adj}", "far from {adj}", "never {adj}",
     "not the least bit {adj}", "not even slightly {adj}", "not {adj} in the slightest",
     "not {adj}, not for a second"),
)


class _Writer:
    """Writes the sentences of one review in one domain and tense."""

    def __init__(self, rng: random.Random, domain: Domain) -> None:
        self.rng, self.domain = rng, domain
        self.past = domain.past_tense if rng.random() < 0.8 else not domain.past_tense

    def be(self, plural: bool) -> str:
        if self.past:
            return "were" if plural else "was"
        return "are" if plural else "is"

    def predicate(self, label: int, negated_p: float = 0.4) -> str:
        """An adjective phrase meaning ``label``: "truly gripping" or "not dull at all"."""
        rng = self.rng
        if rng.random() < negated_p:
            return rng.choice(NEGATED[label]).format(adj=rng.choice(self.domain.adjectives[1 - label]))
        return rng.choice(INTENSIFIERS) + rng.choice(self.domain.adjectives[label])

    def clause(self, phrase: Phrase, label: int, negated_p: float = 0.4) -> str:
        text, plural = phrase
        return f"{text} {self.be(plural)} {self.predicate(label, negated_p)}"

    def overall(self, label: int) -> str:
        return self.clause(self.rng.choice(self.domain.subjects), label)

    def aspect(self, label: int, negated_p: float = 0.4) -> str:
        return self.clause(self.rng.choice(self.domain.aspects), label, negated_p)

    def mixed(self, label: int) -> str:
        """A concession of the opposite polarity, then the overall verdict ``label``."""
        rng = self.rng
        side, main = self.aspect(1 - label, negated_p=0.25), self.overall(label)
        return rng.choice((
            f"{side}, but overall {main}.",
            f"although {side}, {main}.",
            f"even though {side}, {main}.",
            f"{main}, even if {side}.",
            f"{side}. Still, {main}.",
            f"sure, {side}, yet {main}.",
        ))

    def two_aspects(self, label: int) -> str:
        first, second = self.rng.sample(self.domain.aspects, 2)
        return f"{self.clause(first, label)} and {self.clause(second, label)}."

    def verdict(self, label: int) -> str:
        rng = self.rng
        text = rng.choice(SHARED_VERDICTS[label] + self.domain.verdicts[label])
        return text.format(n=rng.choice(SCORES[label]))


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def write_review(rng: random.Random, label: int) -> str:
    """One review of sentiment ``label`` (0 negative, 1 positive), one to four sentences."""
    writer = _Writer(rng, rng.choice(DOMAINS))
    parts = []
    if rng.random() < 0.3:
        parts.append(rng.choice(writer.domain.fillers))
    core = rng.choices(("overall", "mixed", "experience", "aspects"), weights=(25, 35, 20, 20))[0]
    if core == "overall":
        parts.append(writer.overall(label) + ".")
    elif core == "mixed":
        parts.append(writer.mixed(label))
    elif core == "experience":
        parts.append(rng.choice(writer.domain.experiences[label]))
        if rng.random() < 0.5:  # a concession keeps a bare experience from being a keyword lookup
            parts.append(f"{writer.aspect(1 - label, negated_p=0.25)}, but that hardly mattered.")
    else:
        parts.append(writer.two_aspects(label))
    if rng.random() < 0.5:
        parts.append(writer.verdict(label))
    return " ".join(_sentence(p) for p in parts)


def _is_test(text: str) -> bool:
    # hashlib, not hash(): the split of a review must not change with PYTHONHASHSEED.
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % _TEST_BUCKETS == 0


def build_sentiment(split: str, seed: int = 0, n: int | None = None) -> list[dict]:
    """Generate ``n`` distinct labelled reviews for ``split``.

    Args:
        split: ``"train"`` or ``"test"``.
        seed: Same (split, seed, n) gives the same rows; a shorter ``n`` gives a prefix.
        n: Number of rows; defaults to 2000 for train and 400 for test.

    Returns:
        Rows like ``{"text": "This blender is anything but flimsy. Buy it.", "label": 1}``.

    Raises:
        DataError: If ``split`` is unknown or ``n`` is negative or too large.
    """
    if split not in SPLITS:
        raise DataError(f"sentiment: unknown split '{split}'; allowed splits: {', '.join(SPLITS)}")
    n = DEFAULT_SIZES[split] if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise DataError(f"sentiment: n must be a non-negative integer, got {n!r}")
    rng = random.Random(f"sentiment/{split}/{seed}")
    want_test = split == "test"
    rows: list[dict] = []
    seen: set[str] = set()
    labels: list[int] = []
    for _ in range(50 * n + 1000):  # bounded: the review space is large but finite
        if len(rows) == n:
            break
        if not labels:  # the next two labels: one of each, in random order
            labels = rng.sample((0, 1), 2)
        text = write_review(rng, labels[0])
        if text in seen or _is_test(text) != want_test:
            continue
        seen.add(text)
        rows.append({"text": text, "label": labels.pop(0)})
    if len(rows) < n:
        raise DataError(f"sentiment: could not generate {n} distinct {split} reviews; ask for fewer")
    return rows


register_builtin(BuiltinDataset(
    name="sentiment",
    build=build_sentiment,
    description="generated movie and product reviews labelled negative/positive, with negation "
                "('not bad at all') and mixed clauses so no single word decides the label",
    metric="accuracy",
    default_train_size=DEFAULT_SIZES["train"],
    default_test_size=DEFAULT_SIZES["test"],
    task="sequence_classification",
    format="classification",
    label_names=LABEL_NAMES,
    held_out_seed=HELD_OUT_SEED,
))
