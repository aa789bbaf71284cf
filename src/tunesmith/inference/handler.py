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

Two optional methods widen what a handler serves: ``stream_chat(model, tokenizer, messages,
settings)`` yields the reply to a whole conversation piece by piece (``tunesmith chat`` and
``tunesmith serve`` need it; ``ChatInferenceHandler`` has it), and ``predict(model, tokenizer,
texts, pairs)`` returns label probabilities (``tunesmith predict``; ``ClassifierInferenceHandler``).
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Protocol, runtime_checkable

from tunesmith.data.examples import Message
from tunesmith.inference.generate import chat_reply, generate
from tunesmith.inference.predict import ClassifierInferenceHandler
from tunesmith.models.generation import GenerationSettings
from tunesmith.registry import Registry

__all__ = ["INFERENCE_HANDLERS", "ChatInferenceHandler", "DefaultInferenceHandler", "ClassifierInferenceHandler",
           "InferenceHandler", "can_chat",
           "register_inference_handler"]

# ``eval.inference_handler`` names one of these (or 'package.module:Class'). A class is instantiated
# with ``eval.inference_handler_args``; a constructor that takes ``system_prompt`` receives the run's
# ``data.system_prompt`` (so that argument is not set in the config).
INFERENCE_HANDLERS: Registry[Any] = Registry("inference handler", key="eval.inference_handler",
                                             instantiate=True, provided=("system_prompt",))


def register_inference_handler(name: str, *, overwrite: bool = False):
    """Decorator: register an inference handler class (or instance) as ``eval.inference_handler=<name>``.

    Example::

        @register_inference_handler("last-line")
        class LastLine:
            def generate(self, model, tokenizer, prompts, settings): ...

    Raises:
        ConfigError: ``name`` is already registered (pass ``overwrite=True`` to replace it).
    """
    return INFERENCE_HANDLERS.register(name, overwrite=overwrite)


@runtime_checkable
class InferenceHandler(Protocol):
    """Answers a batch of user prompts with a loaded model.

    Example:
        ``ChatInferenceHandler().generate(model, tokenizer, ["Add 1 and 2."], GenerationSettings(8))`` -> ``['#### 3']``
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
        ``ChatInferenceHandler(system_prompt="Answer with a number.").generate( model, tokenizer, ["Add 1 and 2."], GenerationSettings(max_new_tokens=8))`` -> ``['3']``
    """

    def __init__(self, system_prompt: Optional[str] = None, batch_size: int = 16) -> None:
        self.system_prompt = system_prompt
        self.batch_size = batch_size

    def generate(self, model: Any, tokenizer: Any, prompts: list[str], settings: GenerationSettings) -> list[str]:
        """One answer per prompt; a classifier answers with its predicted label name."""
        from tunesmith.inference.predict import ClassifierInferenceHandler, is_classifier

        if is_classifier(model):
            return ClassifierInferenceHandler(batch_size=self.batch_size).generate(model, tokenizer, prompts, settings)
        return generate(model, tokenizer, prompts, settings, self.system_prompt, self.batch_size)

    def chat(self, model: Any, tokenizer: Any, messages: list[Message], settings: GenerationSettings) -> str:
        """The assistant's reply to a whole conversation (which ends with a user turn)."""
        return "".join(self.stream_chat(model, tokenizer, messages, settings)).strip()

    def stream_chat(self, model: Any, tokenizer: Any, messages: list[Message],
                    settings: GenerationSettings) -> Iterable[str]:
        """The reply piece by piece as it is generated (a ``ReplyStream``, which afterwards holds
        ``new_tokens`` and ``hit_eos``); the system prompt is added when the conversation has none."""
        if self.system_prompt and not any(m.role == "system" for m in messages):
            messages = [Message("system", self.system_prompt), *messages]
        return chat_reply(model, tokenizer, messages, settings)


register_inference_handler("chat")(ChatInferenceHandler)
register_inference_handler("classify")(ClassifierInferenceHandler)
DefaultInferenceHandler = ChatInferenceHandler  # the name FineTuner's design gives the default


def can_chat(handler: Any) -> bool:
    """True when ``handler`` answers whole conversations (has ``stream_chat``)."""
    return callable(getattr(handler, "stream_chat", None))
