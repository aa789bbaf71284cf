"""The ``InferenceHandler`` protocol: how ``FineTuner.generate`` turns prompts into answers.

A handler is any object with ``generate(model, tokenizer, prompts, settings) -> list[str]``; no
base class is needed. ``ChatInferenceHandler`` (the default) renders each prompt as a one-turn
conversation with the same chat template code used in training. A custom one usually post-processes
the default::

    class Stripped:
        def generate(self, model, tokenizer, prompts, settings):
            return [t.split("####")[-1].strip() for t in ChatInferenceHandler().generate(
                model, tokenizer, prompts, settings)]

    FineTuner("my-model", inference_handler=Stripped())
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, runtime_checkable

from tunesmith.inference.generate import generate
from tunesmith.models.generation import GenerationSettings

__all__ = ["ChatInferenceHandler", "InferenceHandler"]


@runtime_checkable
class InferenceHandler(Protocol):
    """Answers a batch of user prompts with a loaded model.

    Example:
        >>> ChatInferenceHandler().generate(model, tokenizer, ["Add 1 and 2."], GenerationSettings(8))
        ['#### 3']
    """

    def generate(self, model: Any, tokenizer: Any, prompts: list[str], settings: GenerationSettings) -> list[str]:
        """One answer per prompt, in order, without the prompt or special tokens."""
        ...


class ChatInferenceHandler:
    """The default handler: ``tunesmith.inference.generate.generate`` (chat template, greedy by default).

    Args:
        system_prompt: added as a system turn before each prompt (the run's ``data.system_prompt``).
        batch_size: prompts per ``model.generate`` call.

    Example:
        >>> ChatInferenceHandler(system_prompt="Answer with a number.").generate(
        ...     model, tokenizer, ["Add 1 and 2."], GenerationSettings(max_new_tokens=8))
        ['3']
    """

    def __init__(self, system_prompt: Optional[str] = None, batch_size: int = 16) -> None:
        self.system_prompt = system_prompt
        self.batch_size = batch_size

    def generate(self, model: Any, tokenizer: Any, prompts: list[str], settings: GenerationSettings) -> list[str]:
        return generate(model, tokenizer, prompts, settings, self.system_prompt, self.batch_size)
