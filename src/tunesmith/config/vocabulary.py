"""The closed vocabularies a run's decisions are made in, as str-Enums (as peft keeps ``TaskType``).

Members are strings (``Task.CAUSAL_LM == "causal_lm"``) printed as their value, so they go into
configs, ``run.json`` and messages unchanged. ``Auto.AUTO`` is the one place the config's ``auto``
is declared: a key set to it leaves the choice to tunesmith, and ``tunesmith.api`` makes that choice
(``api/resolved_run.py``, ``api/choices/``); the layers below only ever receive the chosen value.

Example:
    >>> Task("seq2seq") is Task.SEQ2SEQ, f"{Precision.BF16}", is_auto("auto"), is_auto("cpu")
    (True, 'bf16', True, False)
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class Vocabulary(str, Enum):
    """A closed set of names; members are strings, printed as their value."""

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


class Auto(Vocabulary):
    """The value that leaves a setting's choice to tunesmith."""

    AUTO = "auto"


# model.loader=auto: the registered name of transformers' own ``from_pretrained`` loader.
DEFAULT_MODEL_LOADER = Auto.AUTO.value


def is_auto(value: Any) -> bool:
    """Whether a config value leaves its choice to tunesmith (``auto``)."""
    return value == Auto.AUTO


class HubKernels(Vocabulary):
    """How a model uses the hub's compiled kernels (``model.hub_kernels``: auto | on | off)."""

    OFF = "off"
    WHEN_AVAILABLE = "when_available"  # model.hub_kernels=auto: where installed and cached (or reachable)
    REQUIRED = "required"  # model.hub_kernels=on: an error where they cannot be had

    @classmethod
    def for_setting(cls, setting: str) -> "HubKernels":
        """The use ``model.hub_kernels`` declares: ``"auto"`` -> ``WHEN_AVAILABLE``, ``"on"`` -> ``REQUIRED``."""
        from tunesmith.errors import ConfigError

        if isinstance(setting, cls):
            return setting
        by_setting = {Auto.AUTO.value: cls.WHEN_AVAILABLE, "on": cls.REQUIRED, "off": cls.OFF}
        if setting not in by_setting:
            raise ConfigError(f"model.hub_kernels: {setting!r} is not allowed. Allowed: auto, on, off")
        return by_setting[setting]


class Task(Vocabulary):
    """The kind of model a run trains (``model.task``)."""

    CAUSAL_LM = "causal_lm"
    SEQ2SEQ = "seq2seq"
    SEQUENCE_CLASSIFICATION = "sequence_classification"


class Precision(Vocabulary):
    """The numeric precision of the training steps (``train.precision``)."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


class Packing(Vocabulary):
    """How examples become rows of a batch (``data.packing``)."""

    NONE = "none"
    PADDING_FREE = "padding_free"
    PACK = "pack"
    GROUP_BY_LENGTH = "group_by_length"

    @property
    def several_examples_per_row(self) -> bool:
        """Whether a row holds several examples (kept apart by position ids)."""
        return self in (Packing.PADDING_FREE, Packing.PACK)


class Rows(Vocabulary):
    """What a trainer's dataset rows hold."""

    EXAMPLES = "examples"
    PREFERENCE = "preference"
    UNPAIRED_PREFERENCE = "unpaired_preference"
    PROMPT = "prompt"
