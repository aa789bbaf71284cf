"""Exact match of the final number (GSM8K convention: the number after the last ``####``)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from tunesmith.data.builtin.arith import extract_final_number
from tunesmith.data.examples import Conversation
from tunesmith.data.templates import model_prompt
from tunesmith.models.generation import GenerationSettings, generate_texts


@dataclass
class ExactMatchResult:
    accuracy: float
    correct: int
    total: int
    samples: list[dict[str, Any]] = field(default_factory=list)  # question, reference, output, correct

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def evaluate_exact_match(
    model: Any,
    tokenizer: Any,
    conversations: list[Conversation],
    settings: GenerationSettings,
    batch_size: int = 32,
    desc: str = "Evaluating",
) -> ExactMatchResult:
    """Generate an answer for each held-out question and compare final numbers."""
    encoder_decoder = getattr(model.config, "is_encoder_decoder", False)
    prompts = [model_prompt(tokenizer, c.prompt_messages(), encoder_decoder) for c in conversations]
    outputs = generate_texts(model, tokenizer, prompts, settings, batch_size, progress=desc)
    references = [c.reference or "" for c in conversations]
    hits = score_exact_match(outputs, references)
    samples = [
        {"question": c.prompt_messages()[-1].content, "reference": ref, "output": out, "correct": ok}
        for c, ref, out, ok in zip(conversations, references, outputs, hits)
    ]
    total = len(conversations)
    correct = sum(hits)
    return ExactMatchResult(correct / total if total else 0.0, correct, total, samples)
