"""The pieces ``arith`` builds its word problems from, each list split into train and test parts.

A problem is a chain of steps on one person's amount (start, then 1-3 changes, then a question).
Every sentence comes from a list of wordings; the test split draws from wordings, names, objects,
distractor sentences, step orders and starting amounts that the train split never uses, so the
held-out score measures the skill rather than recall of our phrasings.

Wording placeholders: ``{name}`` the person, ``{other}`` someone else, ``{n}`` / ``{g}`` / ``{k}``
numbers, ``{obj}`` the plural object, ``{box}`` a plural container, ``{item}`` / ``{items}`` a
thing bought (singular / plural).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pool:
    """The train and test halves of one list of wordings or entities."""

    train: tuple[str, ...]
    test: tuple[str, ...]

    def part(self, split: str) -> tuple[str, ...]:
        """The wordings ``split`` draws from: the test half for ``"test"``, else the train half."""
        return self.test if split == "test" else self.train


NAMES = Pool(
    train=("Mia", "Leo", "Ava", "Noah", "Zoe", "Sam", "Lily", "Omar", "Nina", "Ben", "Ella", "Raj",
           "Grace", "Tom", "Lucy", "Ivan", "Maya", "Jack", "Sara", "Kai", "Hugo", "Anna", "Finn",
           "Rosa", "Yuki", "Amir", "Chloe", "Dan", "Eva", "Felix"),
    test=("Priya", "Oscar", "Wendy", "Tariq", "Hana", "Marco", "Ines", "Victor", "Leila", "Quinn"),
)
OBJECTS = Pool(
    train=("apples", "marbles", "stickers", "pencils", "cookies", "shells", "stamps", "cards",
           "crayons", "beads", "balloons", "oranges", "buttons", "coins", "erasers", "candles",
           "rocks", "feathers", "postcards", "muffins"),
    test=("acorns", "magnets", "ribbons", "tulips", "pebbles", "cupcakes", "badges", "keys"),
)
BOXES = Pool(train=("boxes", "bags", "jars", "baskets", "packs", "trays", "buckets"),
             test=("crates", "tins", "pouches"))
ITEMS = Pool(
    train=("notebook|notebooks", "toy car|toy cars", "kite|kites", "comic|comics",
           "ticket|tickets", "sandwich|sandwiches", "puzzle|puzzles", "pen|pens", "mug|mugs",
           "scarf|scarves"),
    test=("lamp|lamps", "plant|plants", "poster|posters", "yo-yo|yo-yos"),
)

# --- the start of a chain: how many {obj} {name} has ---------------------------------------
START = Pool(
    train=("{name} has {n} {obj}.",
           "{name} starts the day with {n} {obj}.",
           "There are {n} {obj} in {name}'s room.",
           "{name} owns {n} {obj}.",
           "At first, {name} has {n} {obj}.",
           "{name} collected {n} {obj} last week.",
           "{name}'s desk holds {n} {obj}.",
           "{name} begins with {n} {obj}.",
           "{name} has a pile of {n} {obj}.",
           "Yesterday {name} had {n} {obj}.",
           "{name} brought {n} {obj} to school."),
    test=("{name} keeps {n} {obj} in a drawer.",
          "In the morning {name} counts {n} {obj}."),
)
START_GROUPS = Pool(  # the amount is g * k
    train=("{name} has {g} {box} with {k} {obj} in each.",
           "{name} owns {g} {box}, and each one holds {k} {obj}.",
           "There are {g} {box} of {k} {obj} on {name}'s shelf.",
           "{name} fills {g} {box} with {k} {obj} each.",
           "{name} gets {g} {box}; there are {k} {obj} in every one."),
    test=("{name} lines up {g} {box}; every one contains {k} {obj}.",),
)
START_MONEY = Pool(
    train=("{name} has {n} dollars.",
           "{name} saved {n} dollars.",
           "{name} has {n} dollars in a wallet.",
           "{name}'s piggy bank holds {n} dollars.",
           "{name} starts the week with {n} dollars.",
           "{name} got {n} dollars for a birthday."),
    test=("{name} brings {n} dollars to the fair.",),
)
START_WAGE = Pool(  # the amount is g * k: g hours at k dollars an hour
    train=("{name} works {g} hours and earns {k} dollars an hour.",
           "{name} is paid {k} dollars an hour for {g} hours of work."),
    test=("For {g} hours of babysitting, {name} gets {k} dollars per hour.",),
)

# --- changes to the amount ------------------------------------------------------------------
ADD = Pool(
    train=("Then {name} gets {n} more.",
           "{other} gives {name} {n} more {obj}.",
           "{name} buys {n} more {obj}.",
           "Later {name} finds {n} more {obj}.",
           "{name} is given another {n} {obj}.",
           "Next, {name} picks up {n} extra {obj}.",
           "{name} collects {n} more {obj}.",
           "{other} brings {name} another {n} {obj}.",
           "Then {name} receives {n} {obj} from {other}.",
           "{name} adds {n} {obj} to the pile.",
           "{name} trades for {n} more {obj}.",
           "A friend sends {name} {n} {obj}."),
    test=("After that, {other} hands {name} {n} additional {obj}.",
          "{name} wins {n} {obj} in a game."),
)
ADD_GROUPS = Pool(  # adds g * k
    train=("Then {name} buys {g} {box} with {k} {obj} in each.",
           "{other} gives {name} {g} {box} of {k} {obj}.",
           "{name} adds {g} {box} that hold {k} {obj} each."),
    test=("Next, {name} receives {g} {box}, each holding {k} {obj}.",),
)
SUB = Pool(
    train=("Then {name} gives {n} {obj} to {other}.",
           "{name} loses {n} {obj}.",
           "{name} gives away {n} of them.",
           "Later {name} uses {n} {obj}.",
           "{other} takes {n} of {name}'s {obj}.",
           "{name} sells {n} {obj}.",
           "{name} eats {n} of the {obj}.",
           "{name} throws away {n} {obj}.",
           "Then {name} hands {n} {obj} to {other}.",
           "{name} trades away {n} {obj}.",
           "{n} of the {obj} break.",
           "{name} leaves {n} {obj} at school."),
    test=("After that, {name} drops {n} {obj} and cannot find them.",
          "{name} donates {n} {obj} to a school."),
)
DOUBLE = Pool(  # multiplies by k (2, 3 or 4)
    train=("Then the number of {obj} {name} has becomes {k} times as large.",
           "{name} ends up with {k} times as many {obj} as before.",
           "{other} gives {name} enough {obj} to make {k} times the amount."),
    test=("Thanks to a trade, {name}'s {obj} grow to {k} times their number.",),
)
SPLIT_KEEP = Pool(  # divides by k
    train=("{name} splits the {obj} into {k} equal piles and keeps one pile.",
           "{name} shares the {obj} equally with friends so that {k} people get the same, "
           "{name} included."),
    test=("{name} divides the {obj} evenly among {k} bags and keeps a single bag.",),
)
MONEY_ADD = Pool(
    train=("Then {name} earns {n} dollars.",
           "{other} pays {name} {n} dollars.",
           "{name} gets {n} dollars as a gift.",
           "{name} saves another {n} dollars.",
           "{name} is paid {n} dollars for chores.",
           "{name} sells a toy for {n} dollars.",
           "{name} wins {n} dollars in a contest."),
    test=("{name} finds {n} dollars in a coat pocket.",),
)
MONEY_EARN_HOURS = Pool(  # adds g * k: g hours at k dollars an hour
    train=("Then {name} works {g} more hours at {k} dollars an hour.",
           "{name} earns {k} dollars an hour for {g} more hours."),
    test=("{name} spends {g} extra hours washing cars for {k} dollars per hour.",),
)
MONEY_SUB = Pool(
    train=("Then {name} spends {n} dollars.",
           "{name} pays {n} dollars for lunch.",
           "{name} lends {other} {n} dollars.",
           "{name} uses {n} dollars to buy a book.",
           "{name} spends {n} dollars on a gift.",
           "Then {name} pays {other} {n} dollars.",
           "{name} loses {n} dollars.",
           "{name} gives {n} dollars to charity."),
    test=("{name} puts {n} dollars toward a gift.",),
)
MONEY_BUY = Pool(  # subtracts g * k: g items at k dollars each
    train=("{name} buys {g} {items} at {k} dollars each.",
           "Then {name} pays for {g} {items} that cost {k} dollars apiece."),
    test=("{name} picks out {g} {items}, priced at {k} dollars each.",),
)

# --- the question -------------------------------------------------------------------------
QUESTION = Pool(
    train=("How many {obj} does {name} have now?",
           "How many {obj} does {name} have at the end?",
           "What is the number of {obj} {name} has now?",
           "How many {obj} are left with {name}?"),
    test=("Count {name}'s {obj} after all of this. What is the total?",
          "In the end, how many {obj} belong to {name}?"),
)
MONEY_QUESTION = Pool(
    train=("How many dollars does {name} have now?",
           "How much money does {name} have left, in dollars?",
           "What is {name}'s money at the end, in dollars?"),
    test=("After all this, how many dollars remain with {name}?",),
)
SHARE_QUESTION = Pool(  # the final step divides by k
    train=("{name} then shares all the {obj} equally among {k} friends. "
           "How many {obj} does each friend get?",
           "If {name} puts the {obj} into {k} equal groups, how many {obj} are in each group?"),
    test=("{name} packs the {obj} into {k} bags with the same number in each. "
          "How many {obj} go in one bag?",),
)

# --- sentences with numbers that do not matter ------------------------------------------------
DISTRACTOR = Pool(
    train=("{other} is {n} years old.",
           "The shop is {n} minutes away.",
           "It is {n} degrees outside.",
           "{other} has {n} {obj} too, but keeps them.",
           "{name}'s street has {n} houses."),
    test=("{name}'s cousin lives {n} miles away.",
          "The bus comes every {n} minutes."),
)

# Numbers written as words in some questions, in both splits.
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen", "twenty")
