"""Evaluation by generation: answer each held-out prompt, then score the answers with a metric.

Prompts are rendered with the same template code as training (``model_prompt``) and generated in
batches with left padding (``generate_texts``); greedy unless the settings sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from tunesmith.data.examples import Conversation, Message, Seq2SeqExample
from tunesmith.data.templates import model_prompt
from tunesmith.errors import DataError
from tunesmith.evaluation.metrics import Metric
from tunesmith.models.generation import GenerationSettings, generate_texts


@dataclass
class PromptItem:
    """One held-out prompt and its reference answer.

    ``Conversation([user "2+2?", assistant "#### 4"], reference="4")`` ->
    ``PromptItem([Message("user", "2+2?")], "4", "2+2?")``.
    """

    messages: list[Message]
    reference: str
    question: str  # the last user turn: what a reader of the samples sees


def prompt_items(held_out: list[Any], limit: Optional[int] = None) -> list[PromptItem]:
    """The first ``limit`` held-out examples that have a reference answer, as prompts.

    A conversation's reference is its ``reference`` (e.g. the number after ``####``), else its last
    assistant turn; a source/target example asks with the source and expects the target.
    Unpaired answers to one prompt are asked once (``one_answer_per_prompt``).
    """
    from tunesmith.data.examples import as_eval_conversation, one_answer_per_prompt

    items: list[PromptItem] = []
    for example in one_answer_per_prompt(held_out):  # a prompt's KTO answers: one question
        if not isinstance(example, Seq2SeqExample):
            example = as_eval_conversation(example)  # pairs: prompt + chosen; prompts: prompt and reference
        if isinstance(example, Seq2SeqExample):
            items.append(PromptItem([Message("user", example.source)], example.target, example.source))
        elif isinstance(example, Conversation):
            reference = example.reference if example.reference is not None else example.last_answer()
            prompt = example.prompt_messages()
            if reference is None or not prompt:
                continue
            question = next((m.content for m in reversed(prompt) if m.role == "user"), prompt[-1].content)
            items.append(PromptItem(prompt, reference, question))
        if limit is not None and len(items) >= limit:
            break
    return items


def evaluate_generation(
    model: Any,
    tokenizer: Any,
    items: list[PromptItem],
    metric: Metric,
    settings: GenerationSettings,
    batch_size: int = 32,
    desc: Optional[str] = "Evaluating",
    num_samples: Optional[int] = None,
) -> dict[str, Any]:
    """Generate an answer for every item and score the answers with ``metric``.

    Args:
        model: a causal LM or encoder-decoder (plain or PEFT-wrapped).
        tokenizer: its tokenizer, with the chat template used in training.
        items: prompts and references (``prompt_items``).
        metric: a ``generations`` metric.
        settings: new-token budget and greedy / sampling settings.
        batch_size: prompts per ``generate`` call.
        desc: progress bar label (None: no bar).
        num_samples: how many samples (question, reference, output, score) to keep; None: all.

    Returns:
        ``{"metric": "exact_match", "score": 0.69, "total": 100, "samples": [...], ...}``; metrics
        that score each answer right or wrong (bools) add ``correct``, and exact match also ``accuracy``.

    Raises:
        DataError: there are no items.
    """
    if not items:
        raise DataError(f"{metric.name}: there are no held-out prompts with a reference answer to score")
    encoder_decoder = getattr(model.config, "is_encoder_decoder", False)
    prompts = [model_prompt(tokenizer, item.messages, encoder_decoder) for item in items]
    outputs = generate_texts(model, tokenizer, prompts, settings, batch_size, progress=desc)
    references = [item.reference for item in items]
    scored = metric.score(outputs, references)
    per_example = scored.pop("per_example", None)
    binary = scored.pop("binary", False)
    result: dict[str, Any] = {"metric": metric.name, **scored, "total": len(items)}
    if binary:
        result["correct"] = int(sum(per_example))
    if metric.name == "exact_match":
        result["accuracy"] = result["score"]
    keep = len(items) if num_samples is None else min(num_samples, len(items))
    result["samples"] = [
        {"question": items[i].question, "reference": references[i], "output": outputs[i],
         **({"score": per_example[i]} if per_example is not None else {}),
         **({"correct": per_example[i] == 1.0} if binary else {})}
        for i in range(keep)
    ]
    result["settings"] = {"max_new_tokens": settings.max_new_tokens, "do_sample": settings.do_sample,
                          **({"temperature": settings.temperature, "top_p": settings.top_p}
                             if settings.do_sample else {})}
    return result
