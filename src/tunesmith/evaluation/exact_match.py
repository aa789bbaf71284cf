"""Exact match of the final number (GSM8K convention: the number after the last ``####``).

Registered as metric ``exact_match``; ``tunesmith.evaluation.generation`` generates the answers.
"""

from __future__ import annotations

import re

from tunesmith.data.builtin.arith import extract_final_number


_NUMBER = re.compile(r"^-?[\d,]*\.?\d+$")


def final_answer(text: str) -> str:
    """The answer part of an output: after the last ``####`` if present, else the last non-empty line."""
    if "####" in text:
        return text.rsplit("####", 1)[1].strip()
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def is_correct(output: str, reference: str) -> bool:
    """Numeric references compare final numbers (GSM8K style); others compare the answer text exactly.

    ``("... 3 + 4 = 7\n#### 7", "7")`` -> True; ``("nretnal", "nretnal")`` -> True;
    ``("7, 42, 19", "7, 19, 42")`` -> False.
    """
    reference = reference.strip()
    if _NUMBER.match(reference):
        got = extract_final_number(output)
        return got is not None and got == extract_final_number(reference)
    return final_answer(output) == reference


def score_exact_match(outputs: list[str], references: list[str]) -> list[bool]:
    """``["... #### 12", "it is 7"]`` vs ``["12", "8"]`` -> ``[True, False]``."""
    return [is_correct(out, ref) for out, ref in zip(outputs, references)]
