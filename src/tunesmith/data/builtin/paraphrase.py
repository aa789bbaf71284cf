"""``paraphrase``: generated MRPC-style sentence pairs labelled not_equivalent (0) or equivalent (1).

Each pair starts from one small event (who did what to how many of what, and when). sentence2
either states the same event in other words (synonyms, active/passive, moved time phrase,
"5" vs "five", the other dative form) or a changed event (one number, the agent and the
patient swapped, negation, a verb or key noun replaced by a non-synonym) that is reworded too.
Both labels end up with the same word overlap, so overlap alone says little: a classifier has to
read meaning. Labels alternate in shuffled pairs, so any even-length prefix is exactly balanced.

Example row:
    {"sentence1": "The firm recruited 40 engineers in March.",
     "sentence2": "In March, forty engineers were recruited by the firm.",
     "label": 1}
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Literal

from tunesmith.data.builtin import HELD_OUT_SEED, BuiltinDataset, register_builtin
from tunesmith.data.builtin.instruct_mini import number_to_words
from tunesmith.errors import DataError

SPLITS = ("train", "test")
DEFAULT_SIZES = {"train": 6000, "test": 400}
LABEL_NAMES = ("not_equivalent", "equivalent")
# The test split is about people, teams, organisations, things and quantities that no training
# pair mentions: every test pair names at least one of these and no training pair names any.
HELD_OUT = frozenset({
    "Elena", "Jonas", "Priya", "Samir", "the Falcons", "the Pirates", "the hotel", "the retailer",
    "the school district", "security guards", "phones", "maps", "runs", "the town's population",
    "ticket prices",
})
SPLIT_NOTE = ("split by entity: every test pair names a person, team, organisation, thing or "
              "quantity (" + ", ".join(sorted(HELD_OUT)) + ") that no training pair mentions")

Verb = tuple[str, str, str]  # (base, past, participle): ("hire", "hired", "hired")
Wordings = tuple[str, ...]  # interchangeable wordings of one meaning


@dataclass(frozen=True)
class Frame:
    """One kind of event. Each entry of agents/verbs/things is a tuple of synonymous wordings."""

    kind: Literal["org", "transfer", "contest", "change"]
    agents: tuple[Wordings, ...]
    verbs: tuple[tuple[Verb, ...], ...]
    things: tuple[Wordings, ...]
    times: tuple[str, ...]
    counts: tuple[int, int]  # inclusive range; from 2 so every noun stays plural


DAYS = ("on Monday", "on Tuesday", "on Wednesday", "on Thursday", "on Friday", "on Saturday",
        "last week", "yesterday")
MONTHS = ("in March", "in April", "in May", "in June", "in October", "in November", "last year",
          "last month")
PEOPLE = tuple((name,) for name in ("Maria", "Tom", "Aisha", "Daniel", "Chen", "Olga", "Pedro",
                                    "Fatima", "Lucas", "Hana", "Victor", "Grace", "Samir", "Elena",
                                    "Jonas", "Priya"))
TEAMS = tuple((team,) for team in ("the Tigers", "the Hawks", "the Rovers", "the Wolves", "the Giants",
                                   "the Lions", "the Sharks", "the Comets", "the Falcons", "the Pirates"))
COMPANIES = (("the company", "the firm"), ("the hospital",), ("the airline", "the carrier"),
             ("the factory", "the plant"), ("the bank",), ("the university",), ("the hotel",),
             ("the retailer", "the store chain"))

FRAMES = (
    Frame("org", COMPANIES,
          verbs=((("hire", "hired", "hired"), ("recruit", "recruited", "recruited"),
                  ("take on", "took on", "taken on")),
                 (("lay off", "laid off", "laid off"), ("dismiss", "dismissed", "dismissed"),
                  ("let go", "let go", "let go")),
                 (("promote", "promoted", "promoted"),),
                 (("train", "trained", "trained"), ("instruct", "instructed", "instructed"))),
          things=(("workers", "employees"), ("accountants",), ("drivers",), ("engineers",),
                  ("cooks", "chefs"), ("cleaners",), ("security guards",)),
          times=MONTHS, counts=(2, 90)),
    Frame("org", COMPANIES + (("the city", "the municipality"), ("the school district",)),
          verbs=((("buy", "bought", "bought"), ("purchase", "purchased", "purchased"),
                  ("acquire", "acquired", "acquired")),
                 (("sell", "sold", "sold"),),
                 (("repair", "repaired", "repaired"), ("fix", "fixed", "fixed")),
                 (("rent", "rented", "rented"), ("lease", "leased", "leased"))),
          things=(("trucks", "lorries"), ("computers",), ("desks",), ("bicycles", "bikes"),
                  ("printers",), ("vans",), ("phones", "telephones")),
          times=MONTHS, counts=(2, 90)),
    Frame("transfer", PEOPLE,
          verbs=((("give", "gave", "given"), ("hand", "handed", "handed")),
                 (("lend", "lent", "lent"), ("loan", "loaned", "loaned")),
                 (("send", "sent", "sent"), ("mail", "mailed", "mailed")),
                 (("sell", "sold", "sold"),),
                 (("show", "showed", "shown"),)),
          things=(("books",), ("photos", "photographs"), ("tickets",), ("coins",), ("postcards",),
                  ("stamps",), ("maps",)),
          times=DAYS, counts=(2, 30)),
    Frame("contest", TEAMS,
          verbs=((("beat", "beat", "beaten"), ("defeat", "defeated", "defeated")),),
          things=(("points",), ("goals",), ("runs",)),
          times=DAYS, counts=(2, 20)),
    Frame("change", (("the price of coffee", "coffee prices"), ("the cost of rent", "rents"),
                     ("the number of visitors", "visitor numbers"), ("sales of bicycles", "bicycle sales"),
                     ("the cost of electricity", "electricity costs"),
                     ("ticket prices", "the price of tickets"),
                     ("the town's population", "the population of the town")),
          verbs=((("rise", "rose", "risen"), ("increase", "increased", "increased"),
                  ("go up", "went up", "gone up")),
                 (("fall", "fell", "fallen"), ("decrease", "decreased", "decreased"),
                  ("drop", "dropped", "dropped"), ("go down", "went down", "gone down"))),
          things=(), times=MONTHS, counts=(2, 40)),
)


@dataclass(frozen=True)
class Event:
    """What a sentence says. Indexes point into its frame; ``other`` is the second person/team."""

    frame: int
    agent: int
    other: int
    verb: int
    thing: int
    count: int
    time: int
    negated: bool


@dataclass(frozen=True)
class Style:
    """How a sentence says it; changing any of these keeps the meaning."""

    passive: bool = False
    front_time: bool = False
    number_words: bool = False
    contract: bool = False  # "didn't" / "weren't" for a negated event
    dative_to: bool = False  # transfer: "gave five books to Tom" rather than "gave Tom five books"
    agent_word: int = 0
    verb_word: int = 0
    thing_word: int = 0


def render(event: Event, style: Style) -> str:
    """The sentence for ``event`` in ``style``, e.g. "Maria gave Tom 5 books on Monday."."""
    frame = FRAMES[event.frame]
    agent = _pick(frame.agents[event.agent], style.agent_word)
    other = frame.agents[event.other][0] if event.other >= 0 else ""
    base, past, participle = _pick(frame.verbs[event.verb], style.verb_word)
    count = number_to_words(event.count) if style.number_words else str(event.count)
    thing = _pick(frame.things[event.thing], style.thing_word) if frame.things else ""
    did_not = "didn't" if style.contract else "did not"
    were = ("weren't" if style.contract else "were not") if event.negated else "were"
    verb = f"{did_not} {base}" if event.negated else past
    if frame.kind == "change":  # no object, so no passive
        core = f"{agent} {verb} by {count} percent"
    elif frame.kind == "contest":
        core = (f"{other} {were} {participle} by {agent} by {count} {thing}" if style.passive
                else f"{agent} {verb} {other} by {count} {thing}")
    elif frame.kind == "transfer":
        if style.passive:
            core = f"{count} {thing} {were} {participle} to {other} by {agent}"
        elif style.dative_to:
            core = f"{agent} {verb} {count} {thing} to {other}"
        else:
            core = f"{agent} {verb} {other} {count} {thing}"
    else:
        core = (f"{count} {thing} {were} {participle} by {agent}" if style.passive
                else f"{agent} {verb} {count} {thing}")
    time = frame.times[event.time]
    text = f"{time}, {core}." if style.front_time else f"{core} {time}."
    return text[0].upper() + text[1:]


def _pick(wordings: tuple, index: int):
    return wordings[index % len(wordings)]


def _other_index(rng: random.Random, size: int, current: int) -> int:
    """A random index in ``range(size)`` other than ``current``."""
    return (current + rng.randrange(1, size)) % size


def random_event(rng: random.Random) -> Event:
    """One event (who did what to whom, when) drawn from the sentence frames."""
    index = rng.randrange(len(FRAMES))
    frame = FRAMES[index]
    agent = rng.randrange(len(frame.agents))
    two_sided = frame.kind in ("transfer", "contest")
    return Event(frame=index, agent=agent,
                 other=_other_index(rng, len(frame.agents), agent) if two_sided else -1,
                 verb=rng.randrange(len(frame.verbs)),
                 thing=rng.randrange(len(frame.things)) if frame.things else 0,
                 count=rng.randint(*frame.counts), time=rng.randrange(len(frame.times)),
                 negated=rng.random() < 0.15)


def random_style(rng: random.Random) -> Style:
    """How a sentence is worded: voice, word order, number words, contractions."""
    return Style(passive=rng.random() < 0.3, front_time=rng.random() < 0.3,
                 number_words=rng.random() < 0.3, contract=rng.random() < 0.5,
                 dative_to=rng.random() < 0.5, agent_word=rng.randrange(4),
                 verb_word=rng.randrange(4), thing_word=rng.randrange(4))


def reword(rng: random.Random, event: Event, style: Style, k: int) -> Style:
    """``style`` with up to ``k`` meaning-preserving changes that apply to ``event``."""
    frame = FRAMES[event.frame]
    options = ["front_time", "number_words"]
    if frame.kind != "change":
        options.append("passive")
    if event.negated:
        options.append("contract")
    if frame.kind == "transfer" and not style.passive:
        options.append("dative_to")
    for name, wordings in (("agent_word", frame.agents[event.agent]),
                           ("verb_word", frame.verbs[event.verb]),
                           ("thing_word", frame.things[event.thing] if frame.things else ())):
        if len(wordings) > 1:
            options.append(name)
    changes = {}
    for name in rng.sample(options, min(k, len(options))):
        value = getattr(style, name)
        if isinstance(value, bool):
            changes[name] = not value
        else:
            size = {"agent_word": len(frame.agents[event.agent]), "verb_word": len(frame.verbs[event.verb]),
                    "thing_word": len(frame.things[event.thing]) if frame.things else 1}[name]
            changes[name] = _other_index(rng, size, value % size)
    return dataclasses.replace(style, **changes)


def change_meaning(rng: random.Random, event: Event) -> Event:
    """``event`` with one fact changed: a number, who did it to whom, negation, a verb or a noun."""
    frame = FRAMES[event.frame]
    options = ["count", "negated", "time"]
    if frame.kind in ("transfer", "contest"):
        options.append("swap")
    if frame.kind in ("org", "change"):
        options.append("agent")
    if len(frame.verbs) > 1:
        options.append("verb")
    if len(frame.things) > 1:
        options.append("thing")
    # The classic traps are weighted up; a changed time phrase is the rarest.
    weights = {"count": 3, "negated": 2, "swap": 3, "agent": 2, "verb": 3, "thing": 2, "time": 1}
    what = rng.choices(options, weights=[weights[o] for o in options])[0]
    if what == "count":
        low, high = frame.counts
        count = rng.choice([c for c in range(low, high + 1) if c != event.count])
        return dataclasses.replace(event, count=count)
    if what == "negated":
        return dataclasses.replace(event, negated=not event.negated)
    if what == "swap":
        return dataclasses.replace(event, agent=event.other, other=event.agent)
    if what == "agent":
        return dataclasses.replace(event, agent=_other_index(rng, len(frame.agents), event.agent))
    if what == "verb":
        return dataclasses.replace(event, verb=_other_index(rng, len(frame.verbs), event.verb))
    if what == "thing":
        return dataclasses.replace(event, thing=_other_index(rng, len(frame.things), event.thing))
    return dataclasses.replace(event, time=_other_index(rng, len(frame.times), event.time))


# How many rewordings sentence2 gets, as (choices, weights): negatives get one fewer than
# positives (same weights), because their changed fact already alters a word or two. With this,
# word overlap (Jaccard) separates the labels only about 55% of the time, and the mean overlap of
# negatives is within 0.03 of positives (tests/data/test_builtin_datasets.py checks both).
REWORDINGS = {1: ((1, 2, 3), (6, 3, 1)), 0: ((0, 1, 2), (6, 3, 1))}


def make_pair(rng: random.Random, label: int) -> tuple[Event, Event, str, str]:
    """One (event, sentence2's event, sentence1, sentence2) with the given label."""
    event, style = random_event(rng), random_style(rng)
    counts, weights = REWORDINGS[label]
    k = rng.choices(counts, weights=weights)[0]
    second = event if label == 1 else change_meaning(rng, event)
    return event, second, render(event, style), render(second, reword(rng, second, style, k))


def entities(event: Event) -> set[str]:
    """The first wordings of the agent, the other party and the thing that ``event`` names."""
    frame = FRAMES[event.frame]
    named = {frame.agents[event.agent][0]}
    if event.other >= 0:
        named.add(frame.agents[event.other][0])
    if frame.things:
        named.add(frame.things[event.thing][0])
    return named


def build_paraphrase(split: str, seed: int = 0, n: int | None = None) -> list[dict]:
    """Generate ``n`` distinct labelled sentence pairs for ``split``.

    Args:
        split: ``"train"`` or ``"test"``.
        seed: Same (split, seed, n) gives the same rows; a shorter ``n`` gives a prefix.
        n: Number of rows; defaults to 6000 for train and 400 for test.

    Returns:
        Rows like ``{"sentence1": "Maria gave Tom 5 books on Monday.",
        "sentence2": "Tom gave Maria 5 books on Monday.", "label": 0}``.

    Raises:
        DataError: If ``split`` is unknown or ``n`` is negative or too large.
    """
    if split not in SPLITS:
        raise DataError(f"paraphrase: unknown split '{split}'; allowed splits: {', '.join(SPLITS)}")
    n = DEFAULT_SIZES[split] if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise DataError(f"paraphrase: n must be a non-negative integer, got {n!r}")
    rng = random.Random(f"paraphrase/{split}/{seed}")
    want_test = split == "test"
    rows: list[dict] = []
    seen: set[tuple[str, str]] = set()
    labels: list[int] = []
    for _ in range(50 * n + 1000):  # bounded: the event space is large but finite
        if len(rows) == n:
            break
        if not labels:  # the next two labels: one of each, in random order
            labels = rng.sample((0, 1), 2)
        event, second_event, first, second = make_pair(rng, labels[0])
        # A positive whose rewordings did not show (e.g. a one-wording verb) would be a copy.
        if first == second or (first, second) in seen:
            continue
        held_out = (entities(event) | entities(second_event)) & HELD_OUT
        if want_test != bool(held_out):
            continue
        seen.add((first, second))
        rows.append({"sentence1": first, "sentence2": second, "label": labels.pop(0)})
    if len(rows) < n:
        raise DataError(f"paraphrase: could not generate {n} distinct {split} pairs; ask for fewer")
    return rows


register_builtin(BuiltinDataset(
    name="paraphrase",
    build=build_paraphrase,
    description="generated sentence pairs labelled not_equivalent/equivalent: rewordings vs "
                "one-fact changes with the same word overlap (numbers, swapped roles, negation)",
    metric="accuracy",
    default_train_size=DEFAULT_SIZES["train"],
    default_test_size=DEFAULT_SIZES["test"],
    task="sequence_classification",
    format="pair_classification",
    label_names=LABEL_NAMES,
    split_note=SPLIT_NOTE,
    held_out_seed=HELD_OUT_SEED,
))
