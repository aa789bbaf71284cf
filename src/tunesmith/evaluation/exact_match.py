"""Exact match of the final number (GSM8K convention: the number after the last ``####``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tunesmith.data.builtin.arith import extract_final_number
from tunesmith.data.examples import Conversation
from tunesmith.data.templates import render_prompt
from tunesmith.models.generation import GenerationSettings, generate_texts


@dataclass
class ExactMatchResult:
    accuracy: float
    correct: int
    total: int
    samples: list[dict[str, Any]] = field(default_factory=list)  # question, reference, output, correct

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_exact_match(outputs: list[str], references: list[str]) -> list[bool]:
    """``["... #### 12", "it is 7"]`` vs ``["12", "8"]`` -> ``[True, False]``."""
    return [
        extract_final_number(out) is not None and extract_final_number(out) == extract_final_number(ref)
        for out, ref in zip(outputs, references)
    ]


def evaluate_exact_match(
    model: Any,
    tokenizer: Any,
    conversations: list[Conversation],
    settings: GenerationSettings,
    batch_size: int = 32,
    desc: str = "Evaluating",
) -> ExactMatchResult:
    """Generate an answer for each held-out question and compare final numbers."""
    prompts = [render_prompt(tokenizer, c.prompt_messages()) for c in conversations]
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
