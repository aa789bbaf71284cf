"""Training: registered trainers, callbacks and the TrainingArguments built from a config.

``register_trainer`` and ``register_callback`` add your own, named in the config as
``train.trainer=<name>`` and ``train.callbacks=[<name>]``. Names are imported on first use, so
that importing this package does not import torch.
"""

from typing import Any

_EXPORTS = {"TRAINERS": "trainers", "register_trainer": "trainers", "CALLBACKS": "callbacks",
            "register_callback": "callbacks"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tunesmith.training' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"tunesmith.training.{_EXPORTS[name]}"), name)
