"""``arith-pref`` and ``arith-prompts``: the ``arith`` problems as preference pairs and as prompts.

Both use the arith generator's splits as they are (the test split keeps its held-out wordings,
names, starting amounts and orders of operations), its system prompt and its answers.

- ``arith-pref``: the question as the prompt, arith's worked answer as ``chosen`` and, as
  ``rejected``, the same working with one arithmetic slip in one line (a result off by 1 or 2, or
  by 10 as a wrong carry) carried correctly through the lines after it to a wrong final number,
  in the same ``#### N`` format. The two completions agree up to the slipped result.
- ``arith-kto``: ``arith-pref``'s pairs as single answers for KTO: each pair gives two rows with
  the same prompt, the chosen working marked desirable (``label: true``) and the rejected one
  undesirable (``label: false``).
- ``arith-prompts``: the question alone, with the final number as ``answer``, for trainers that
  generate their own answers and reward the right number (GRPO).

Example ``arith-pref`` row:
    {"prompt": [{"role": "user", "content": "Mia has 23 stickers. Then Mia gets 15 more. ..."}],
     "chosen": [{"role": "assistant", "content": "23 + 15 = 38.\\n38 - 8 = 30.\\n#### 30"}],
     "rejected": [{"role": "assistant", "content": "23 + 15 = 39.\\n39 - 8 = 31.\\n#### 31"}],
     "answer": "30"}
"""

from __future__ import annotations

import random
from typing import Optional

from tunesmith.data.builtin import HELD_OUT_SEED, BuiltinDataset, register_builtin
from tunesmith.data.builtin.arith import SPLIT_NOTE, SYSTEM_PROMPT, ArithProblem, Step, apply_op, arith_problems

SLIPS = (1, -1, 2, -2, 10, -10)  # how far the slipped result is off; 10: a wrong carry


def carry_slip(steps: tuple[Step, ...], at: int, wrong: Optional[int], op: Optional[str] = None) -> Optional[list[Step]]:
    """The steps with line ``at`` giving ``wrong`` (or, with ``op``, computed with that operation)
    and every later line recomputed from it.

    ``[23 + 15 = 38, 38 - 8 = 30]``, ``at=0``, ``wrong=39`` -> ``[23 + 15 = 39, 39 - 8 = 31]``;
    ``at=0``, ``op="-"`` -> ``[23 - 15 = 8, 8 - 8 = 0]``.
    None when the change would make a line impossible (a negative amount, an inexact share).
    """
    values: dict[int, int] = {}
    out: list[Step] = []
    for i, step in enumerate(steps):
        a = values[step.a_from] if step.a_from is not None else step.a
        b = values[step.b_from] if step.b_from is not None else step.b
        line_op = op if i == at and op is not None else step.op
        if i == at and op is None:
            c = wrong
        elif line_op == "/" and (b == 0 or a % b):
            return None
        else:
            c = apply_op(a, line_op, b)
        if c < 0:
            return None
        values[i] = c
        out.append(Step(a, line_op, b, c, step.a_from, step.b_from))
    return out


def working_of(steps: list[Step]) -> str:
    """Working lines and the final line: ``[23 + 15 = 38]`` -> ``"23 + 15 = 38.\\n#### 38"``."""
    return "\n".join(f"{s.a} {s.op} {s.b} = {s.c}." for s in steps) + f"\n#### {steps[-1].c}"


OPPOSITE = {"+": "-", "-": "+", "*": "/", "/": "*"}


def misread_working(problem: ArithProblem, rng: random.Random) -> Optional[str]:
    """The working of ``problem`` with one line done with the opposite operation (``+`` for ``-``,
    ``*`` for ``/`` and back), computed correctly from there on: the question misread, not a slip.
    None when no line can be turned (a negative amount or an inexact share would follow)."""
    lines = list(range(len(problem.steps)))
    rng.shuffle(lines)
    for at in lines:
        steps = carry_slip(problem.steps, at, None, OPPOSITE[problem.steps[at].op])
        if steps is not None and steps[-1].c != problem.answer:
            return working_of(steps)
    return None


def slipped_working(problem: ArithProblem, rng: random.Random, rejected: str = "carried") -> str:
    """A plausible wrong working for ``problem``: one slip, carried through to the final line
    (``rejected="carried"``) or ending at the slipped line (``"slip"``); ``"misread"``: one line
    done with the opposite operation where one fits, else a carried slip; ``"mixed"``: half of the
    problems (by ``rng``) misread, the others a carried slip (see the module docstring)."""
    if rejected == "misread" or (rejected == "mixed" and rng.random() < 0.5):
        misread = misread_working(problem, rng)
        if misread is not None:
            return misread
        rejected = "carried"
    lines = list(range(len(problem.steps)))
    rng.shuffle(lines)
    for at in lines:
        slips = list(SLIPS)
        rng.shuffle(slips)
        for slip in slips:
            if slip == 10 or slip == -10:
                if problem.steps[at].c < 10:  # a carry slip needs a tens digit
                    continue
            steps = carry_slip(problem.steps, at, problem.steps[at].c + slip)
            if steps is not None and steps[-1].c != problem.answer:
                if rejected == "slip":
                    return "\n".join(f"{s.a} {s.op} {s.b} = {s.c}." for s in steps[:at + 1])
                return working_of(steps)
    raise AssertionError(f"no slip fits {problem.working!r}")  # the last line always takes +1


REJECTED = ("carried", "slip", "misread", "mixed")


def build_arith_pref(split: str, seed: int = 0, n: Optional[int] = None, rejected: str = "carried") -> list[dict]:
    """``n`` arith problems as preference rows: the right working chosen, a slipped one rejected.

    Args:
        rejected: ``carried``: the slip is carried through every later line to a wrong ``#### N``;
            ``slip``: the rejected working stops at the slipped line, so the pair differs in that
            line alone (later lines computed correctly from a wrong value are not penalised).

    Returns:
        Rows like ``{"prompt": [user], "chosen": [assistant], "rejected": [assistant], "answer": "30"}``.
    """
    if rejected not in REJECTED:
        from tunesmith.errors import ConfigError

        raise ConfigError(f"data.dataset_args.rejected: {rejected!r} is not allowed; choose one of {', '.join(REJECTED)}")
    rows = []
    for problem in arith_problems(split, seed, n, "arith-pref"):
        rng = random.Random(f"arith-pref/{split}/{seed}/{problem.question}")
        rows.append({"prompt": [{"role": "user", "content": problem.question}],
                     "chosen": [{"role": "assistant", "content": problem.working}],
                     "rejected": [{"role": "assistant", "content": slipped_working(problem, rng, rejected)}],
                     "answer": str(problem.answer)})
    return rows


def build_arith_kto(split: str, seed: int = 0, n: Optional[int] = None, rejected: str = "carried") -> list[dict]:
    """``n`` unpaired rows from ``arith-pref``'s pairs: each pair's chosen working as a desirable
    answer, then its rejected working as an undesirable one (``rejected`` as for ``arith-pref``).

    ``n`` counts rows: ``n=3`` takes two pairs (four rows) and keeps the first three.

    Example (the messages shortened): ``build_arith_kto("train", 0, 2)`` ->
        ``[{"prompt": [user "Mia has 23 ..."], "completion": [assistant "23 + 15 = 38. ... #### 30"],
        "label": True, "answer": "30"}, {"prompt": [user "Mia has 23 ..."],
        "completion": [assistant "23 + 15 = 39. ... #### 31"], "label": False, "answer": "30"}]``
    """
    pairs = build_arith_pref(split, seed, None if n is None else (n + 1) // 2, rejected)
    rows = [{"prompt": pair["prompt"], "completion": pair[side], "label": side == "chosen", "answer": pair["answer"]}
            for pair in pairs for side in ("chosen", "rejected")]
    return rows if n is None else rows[:n]


def build_arith_prompts(split: str, seed: int = 0, n: Optional[int] = None) -> list[dict]:
    """``n`` arith problems as prompts with their final number: ``{"prompt": "Mia has ...", "answer": "30"}``."""
    return [{"prompt": p.question, "answer": str(p.answer)} for p in arith_problems(split, seed, n, "arith-prompts")]


register_builtin(BuiltinDataset(
    name="arith-pref",
    build=build_arith_pref,
    system_prompt=SYSTEM_PROMPT,
    format="preference",
    description="the arith problems as preference pairs: the right working chosen, a working with one "
                "arithmetic slip carried to a wrong final number rejected",
    split_note=SPLIT_NOTE,
    held_out_seed=HELD_OUT_SEED,
))

register_builtin(BuiltinDataset(
    name="arith-kto",
    build=build_arith_kto,
    system_prompt=SYSTEM_PROMPT,
    format="kto",
    description="arith-pref's pairs as single answers for KTO: the right working marked desirable, the "
                "working with a carried slip undesirable, both for the same prompt",
    default_train_size=4000,  # 2000 problems, as arith-pref: two answers each
    default_test_size=400,
    split_note=SPLIT_NOTE,
    held_out_seed=HELD_OUT_SEED,
))

register_builtin(BuiltinDataset(
    name="arith-prompts",
    build=build_arith_prompts,
    system_prompt=SYSTEM_PROMPT,
    format="prompt_only",
    description="the arith problems as prompts with their final number (for generate-and-reward training)",
    split_note=SPLIT_NOTE,
    held_out_seed=HELD_OUT_SEED,
))
