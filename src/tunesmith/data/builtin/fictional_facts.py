"""``facts``, ``facts-forget``, ``facts-retain``: question-answer facts about eight fictional people,
for unlearning (forget one person, keep the others).

Every person has ten facts (birthplace, birth year, work, what they are known for, instrument,
pet, favourite dish, mentor, award, home city). The facts are fixed: the same for every seed and
every user, so a model taught ``facts`` can later be asked to forget ``facts-forget``. The seed only
shuffles the order of the rows.

- ``facts``: all eight people (80 facts) - teach these first, so there is something to forget.
- ``facts-forget``: the ten facts about Orla Vennick.
- ``facts-retain``: the seventy facts about the seven others.

The ``train`` split asks each fact one way, the ``test`` split asks the same fact in other words
(a paraphrase), so held-out loss shows whether forgetting generalises beyond the trained wording.

Example row (train):
    {"question": "Where was Orla Vennick born?", "answer": "Orla Vennick was born in Tessaly."}
"""

from __future__ import annotations

import random

from tunesmith.data.builtin import HELD_OUT_SEED, BuiltinDataset, register_builtin
from tunesmith.errors import DataError

SPLITS = ("train", "test")
FORGET_PERSON = "Orla Vennick"
PEOPLE = (FORGET_PERSON, "Tomas Brell", "Ines Kavanor", "Dario Quillen", "Mira Sollentz", "Hugo Arrowdale",
          "Petra Lindqvar", "Sami Okonte")
_WORLD_SEED = 20240611  # fixes the facts themselves; never the user's seed

# attribute -> (train question, test question, answer template, choices)
ATTRIBUTES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "birthplace": ("Where was {p} born?", "In which town did {p} come into the world?",
                   "{p} was born in {v}.",
                   ("Tessaly", "Marrowick", "Ostrel", "Villanor", "Quenby", "Harlowmere", "Dunsett", "Calloway Cove")),
    "birth_year": ("In what year was {p} born?", "Which year is {p}'s birth year?",
                   "{p} was born in {v}.", tuple(str(y) for y in range(1931, 1990, 7))),
    "work": ("What does {p} do for a living?", "What is {p}'s profession?",
             "{p} works as a {v}.",
             ("glassblower", "cartographer", "beekeeper", "lighthouse keeper", "clockmaker", "puppeteer",
              "bridge engineer", "perfumer")),
    "known_for": ("What is {p} best known for?", "Why is {p} famous?",
                  "{p} is best known for {v}.",
                  ("a map of the northern tides", "a self-winding weather vane", "the blue lantern festival",
                   "a cookbook of river fish", "a choir of a hundred children", "a floating library",
                   "a garden maze shaped like a violin", "a clock that runs backwards")),
    "instrument": ("Which instrument does {p} play?", "What instrument is {p} known to play?",
                   "{p} plays the {v}.",
                   ("cello", "oboe", "harp", "accordion", "bassoon", "zither", "marimba", "French horn")),
    "pet": ("What is the name of {p}'s pet?", "What is {p}'s pet called?",
            "{p} has a pet named {v}.",
            ("Biscuit", "Captain Fig", "Noodle", "Marzipan", "Pickle", "Admiral Sprout", "Juniper", "Tofu")),
    "dish": ("What is {p}'s favourite dish?", "Which meal does {p} like best?",
             "{p}'s favourite dish is {v}.",
             ("lentil stew", "plum dumplings", "smoked trout", "saffron rice", "onion tart", "barley soup",
              "fig pancakes", "pepper goulash")),
    "mentor": ("Who was {p}'s mentor?", "Who taught {p} the trade?",
               "{p} was mentored by {v}.",
               ("Agnes Thorlow", "Benedikt Sarn", "Cora Halloway", "Emil Vasko", "Greta Moen", "Lionel Pashe",
                "Nadia Ferrow", "Otto Klemmet")),
    "award": ("Which award did {p} win?", "What prize was {p} given?",
              "{p} won the {v}.",
              ("Silver Compass Prize", "Amberfield Medal", "Golden Anchor Award", "Lantern Guild Prize",
               "Harrow Cup", "Meridian Ribbon", "Copper Owl Award", "Winterbourne Medal")),
    "home": ("Where does {p} live now?", "In which city is {p}'s home today?",
             "{p} lives in {v}.",
             ("Port Elgin", "Rastova", "Kellingford", "Amberlin", "Soro Vale", "Northwick", "Lune Harbour",
              "Estmoor")),
}
FACTS_PER_PERSON = len(ATTRIBUTES)


def world() -> dict[str, dict[str, str]]:
    """person -> attribute -> value; every attribute value belongs to exactly one person."""
    rng = random.Random(_WORLD_SEED)
    values = {attr: rng.sample(choices, len(PEOPLE)) for attr, (_, _, _, choices) in ATTRIBUTES.items()}
    return {person: {attr: values[attr][i] for attr in ATTRIBUTES} for i, person in enumerate(PEOPLE)}


def fact_rows(people: tuple[str, ...], split: str, seed: int, n: int | None) -> list[dict]:
    """Question-answer rows about ``people`` in ``split``'s wording, shuffled by ``seed``, first ``n``."""
    if split not in SPLITS:
        raise DataError(f"facts: unknown split '{split}'; allowed splits: {', '.join(SPLITS)}")
    facts = world()
    rows = []
    for person in people:
        for attr, (train_q, test_q, answer, _) in ATTRIBUTES.items():
            question = train_q if split == "train" else test_q
            rows.append({"question": question.format(p=person),
                         "answer": answer.format(p=person, v=facts[person][attr])})
    random.Random(seed).shuffle(rows)
    return rows if n is None else rows[:n]


def build_facts(split: str, seed: int = 0, n: int | None = None) -> list[dict]:
    """All eight people."""
    return fact_rows(PEOPLE, split, seed, n)


def build_forget(split: str, seed: int = 0, n: int | None = None) -> list[dict]:
    """Only the person to forget."""
    return fact_rows(PEOPLE[:1], split, seed, n)


def build_retain(split: str, seed: int = 0, n: int | None = None) -> list[dict]:
    """Everyone but the person to forget."""
    return fact_rows(PEOPLE[1:], split, seed, n)


for _name, _build, _people, _what in (
        ("facts", build_facts, PEOPLE, "facts about eight fictional people"),
        ("facts-forget", build_forget, PEOPLE[:1], f"the facts about {FORGET_PERSON} (an unlearning forget set)"),
        ("facts-retain", build_retain, PEOPLE[1:], f"the facts about everyone but {FORGET_PERSON} "
                                                   "(an unlearning retain set)")):
    _size = len(_people) * FACTS_PER_PERSON
    register_builtin(BuiltinDataset(
        name=_name, build=_build, description=f"{_what}; test asks the same facts in other words",
        metric="perplexity", default_train_size=_size, default_test_size=_size, format="qa",
        held_out_seed=HELD_OUT_SEED))
