"""Prompting a loaded model with the same chat template code used in training."""

from __future__ import annotations

from typing import Any

from tunesmith.data.examples import Message
from tunesmith.data.templates import model_prompt
from tunesmith.inference.streaming import ReplyStream
from tunesmith.models.generation import GenerationSettings, generate_texts


def generate(model: Any, tokenizer: Any, prompts: list[str], settings: GenerationSettings,
             system_prompt: str | None = None, batch_size: int = 16) -> list[str]:
    """Answer each user prompt as a one-turn conversation."""
    encoder_decoder = getattr(model.config, "is_encoder_decoder", False)
    rendered = [model_prompt(tokenizer, _turns(p, system_prompt), encoder_decoder) for p in prompts]
    return generate_texts(model, tokenizer, rendered, settings, batch_size)


def chat_reply(model: Any, tokenizer: Any, history: list[Message], settings: GenerationSettings) -> ReplyStream:
    """The assistant's reply to ``history`` (which ends with the user's turn), streamed: iterate for
    the text pieces, then read ``new_tokens`` / ``hit_eos`` / ``prompt_tokens``."""
    encoder_decoder = getattr(model.config, "is_encoder_decoder", False)
    return ReplyStream(model, tokenizer, model_prompt(tokenizer, history, encoder_decoder), settings)


def _turns(prompt: str, system_prompt: str | None) -> list[Message]:
    return ([Message("system", system_prompt)] if system_prompt else []) + [Message("user", prompt)]
