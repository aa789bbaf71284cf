"""The ``Preprocessor`` protocol: canonical examples -> token rows, replaceable from Python.

A preprocessor is any object with ``__call__(tokenizer, examples, task, settings) -> (rows, stats)``;
no base class is needed. ``ChatTemplatePreprocessor`` (the default) is ``tokenize_examples``: the
chat template, ``data.loss_on`` and ``data.max_length`` decide ``input_ids`` and unshifted ``labels``.
A custom one usually edits the examples and then calls the default::

    class Upper:
        def __call__(self, tokenizer, examples, task, settings):
            return ChatTemplatePreprocessor()(tokenizer, [shout(e) for e in examples], task, settings)

    FineTuner("my-model", dataset_name="rows.jsonl", preprocessor=Upper())

A custom preprocessor bypasses the tokenized-data cache (its output cannot be fingerprinted).
From a config, ``data.preprocessor`` names a registered one or ``package.module:Class``, built with
``data.preprocessor_args``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from tunesmith.data.tokenize import TokenizeSettings, TokenizeStats, tokenize_examples
from tunesmith.registry import Registry

__all__ = ["PREPROCESSORS", "ChatTemplatePreprocessor", "DefaultPreprocessor", "Preprocessor", "register_preprocessor"]

# ``data.preprocessor`` names one of these (or 'package.module:Class'); a class is instantiated with
# ``data.preprocessor_args``.
PREPROCESSORS: Registry[Any] = Registry("preprocessor", key="data.preprocessor", instantiate=True)


def register_preprocessor(name: str, *, overwrite: bool = False):
    """Decorator: register a preprocessor class (or instance) as ``data.preprocessor=<name>``.

    Example::

        @register_preprocessor("lowercase")
        class Lowercase:
            def __init__(self, keep: tuple = ()): self.keep = keep
            def __call__(self, tokenizer, examples, task, settings): ...
        # data.preprocessor=lowercase  data.preprocessor_args={keep: [DNA]}

    Raises:
        ConfigError: ``name`` is already registered (pass ``overwrite=True`` to replace it).
    """
    return PREPROCESSORS.register(name, overwrite=overwrite)


@runtime_checkable
class Preprocessor(Protocol):
    """Turns canonical examples into token rows for one task.

    Example:
        ``rows, stats = ChatTemplatePreprocessor()(tokenizer, [Conversation([Message("user", "Hi"), Message("assistant", "Hello")])], "causal_lm", TokenizeSettings()); "input_ids" in rows[0] and "labels" in rows[0] # labels: -100 where not trained`` -> ``True``
    """

    def __call__(self, tokenizer: Any, examples: list[Any], task: str,
                 settings: TokenizeSettings) -> tuple[list[dict[str, Any]], TokenizeStats]:
        """Rows of ``input_ids`` / ``labels`` (and more per task) and the counts of what was dropped or cut."""
        ...


class ChatTemplatePreprocessor:
    """The default preprocessor: ``tunesmith.data.tokenize.tokenize_examples``.

    Example:
        ``rows, stats = ChatTemplatePreprocessor()(tokenizer, examples, "causal_lm", TokenizeSettings()); stats.kept == len(rows)`` -> ``True``
    """

    def __call__(self, tokenizer: Any, examples: list[Any], task: str,
                 settings: TokenizeSettings) -> tuple[list[dict[str, Any]], TokenizeStats]:
        """Rows of ``input_ids`` / ``labels`` and the counts of what was dropped or cut."""
        return tokenize_examples(tokenizer, examples, task, settings)


register_preprocessor("chat_template")(ChatTemplatePreprocessor)
DefaultPreprocessor = ChatTemplatePreprocessor  # the name FineTuner's design gives the default
