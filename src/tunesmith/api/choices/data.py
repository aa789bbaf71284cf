"""What the data settings left to ``auto`` mean for this run: the chat template (``data.template``),
the data format (``data.format``) and the held-out metric (``eval.metric``) where it is known before
the data is read.

``data.template=auto`` is the tokenizer's own chat template (``own``); a tokenizer without one (a
base model) renders conversations as plain text with the packaged ``continuation`` template.
``data.format=auto`` is the format a built-in dataset or a hub preset is written in, else it is
detected from the columns of the rows (``tunesmith.data.formats.detect_format``) when they are read.
"""

from __future__ import annotations

from typing import Any, Optional

from tunesmith.config.vocabulary import Task, is_auto


def choose_template(setting: str, task: str, tokenizer: Any) -> str:
    """``data.template`` with ``auto`` replaced: ``own`` when the tokenizer has a chat template, else
    ``continuation`` (plain text; only causal LMs render conversations)."""
    from tunesmith.data.templates import OWN_TEMPLATE

    if not is_auto(setting):
        return setting
    if getattr(tokenizer, "chat_template", None) or task != Task.CAUSAL_LM:
        return OWN_TEMPLATE
    return "continuation"


def template_setting(setting: Optional[str]) -> Optional[str]:
    """The template name the data layer renders with for a ``data.template`` value: ``auto`` (and the
    plan's ``own``) is the tokenizer's own chat template (None there; ``continuation`` when it has none)."""
    from tunesmith.data.templates import OWN_TEMPLATE

    return None if setting is None or is_auto(setting) or setting == OWN_TEMPLATE else setting


def resolve_template(tokenizer: Any, data_cfg: Any = None) -> Any:
    """The ``ChatTemplate`` ``data_cfg.template`` names for this tokenizer (``None`` or ``auto``: the
    tokenizer's own, or ``continuation`` when it has none; the user is told once).

    ``resolve_template(tok, DataConfig(template="chatml")).render_prompt([Message("user", "Hi")])``
    -> ``"<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n"``.
    """
    from tunesmith.data.templates import template_named

    setting = getattr(data_cfg, "template", None) if data_cfg is not None else None
    return template_named(tokenizer, template_setting(setting), getattr(data_cfg, "tags", None))


def template_names() -> list[str]:
    """Every allowed ``data.template``: ``["auto", "tags", "alpaca", "chatml", "continuation", "llama3", "plain"]``."""
    from tunesmith.data import templates

    return ["auto", *templates.template_names()]


def choose_format(data_cfg: Any) -> Optional[str]:
    """``data.format`` with ``auto`` replaced where it is known before reading: the format a built-in
    dataset or a hub preset is written in; None when the rows' columns decide (``detect_format``)."""
    from tunesmith.data.builtin import BUILTIN_DATASETS
    from tunesmith.data.presets import preset_for
    from tunesmith.data.sources import is_builtin

    if not is_auto(data_cfg.format):
        return data_cfg.format
    if is_builtin(data_cfg.train) and data_cfg.train in BUILTIN_DATASETS:
        return BUILTIN_DATASETS.get(data_cfg.train).row_format
    preset = preset_for(data_cfg.train, data_cfg.subset)
    return preset.format if preset is not None else None


def known_metric(cfg: Any, task: str) -> Optional[str]:
    """``eval.metric`` with ``auto`` replaced where it is known before reading (a classifier's
    ``accuracy``, a built-in dataset's own metric); None when the held-out examples decide."""
    from tunesmith.data.sources import is_builtin
    from tunesmith.evaluation.evaluate import metric_for_data

    if not is_auto(cfg.eval.metric):
        return str(cfg.eval.metric)
    name = cfg.data.eval or cfg.data.train
    if task == Task.SEQUENCE_CLASSIFICATION or (name and is_builtin(name)):
        return metric_for_data(task, name, ())
    return None
