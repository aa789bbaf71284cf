"""The data layer's public functions for config values that may be ``auto``.

``tunesmith.data`` works with chosen values only: a format name or None (detected from the
columns), a template name or None (the tokenizer's own), a concrete packing, a concrete task.
These functions take the user's settings as written (``DataConfig`` defaults included), make the
choices with ``tunesmith.api.choices`` and call the data layer: the run and the users of the data
functions go through the same decisions.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from tunesmith.config.schema import DataConfig
from tunesmith.config.vocabulary import Task, is_auto


def concrete_data(cfg: DataConfig | dict[str, Any], task: Optional[str] = None, packing: Optional[str] = None,
                  model_type: Optional[str] = None) -> DataConfig:
    """``cfg`` with the defaults its dataset brings (``resolved_data_config``) and every ``auto`` the
    data layer reads replaced: ``format`` (a built-in's or preset's, else None: detected from the
    columns), ``template`` (None: the tokenizer's own), ``packing`` (``packing`` when the run chose
    it, else ``resolve_packing`` for ``task``) and the formats of ``data.mix`` sources.

    Example: ``concrete_data(DataConfig(train="arith-pref")).format`` -> ``"preference"``.
    """
    from tunesmith.api.choices.batching import resolve_packing
    from tunesmith.api.choices.data import choose_format, template_setting
    from tunesmith.config.validate import build_config
    from tunesmith.data.pipeline import check_values_data, resolved_data_config

    if isinstance(cfg, dict):
        cfg = check_values_data(build_config(cfg, DataConfig, prefix="data."))
    filled = resolved_data_config(cfg)
    if packing is None:
        packing = (resolve_packing(cfg.packing, task or Task.CAUSAL_LM.value, model_type) if is_auto(cfg.packing)
                   else cfg.packing)
    mix = [dataclasses.replace(s, format=None if is_auto(s.format) else s.format) for s in cfg.mix]
    return dataclasses.replace(filled, format=choose_format(cfg), template=template_setting(cfg.template),
                               packing=packing, mix=mix)


def build_datasets(cfg: DataConfig | dict[str, Any], tokenizer: Any, seed: int = 42, task: str = "causal_lm",
                   preprocessor: Any = None, packing: Optional[str] = None, rows_per_step: int = 1) -> Any:
    """``tunesmith.data.pipeline.build_datasets`` for ``cfg`` as written (see ``concrete_data``);
    ``packing``: the run's chosen packing, when there is a plan; ``rows_per_step``: the rows of one
    optimizer step over all processes (a streamed corpus keeps its position once per step)."""
    from tunesmith.data import pipeline

    return pipeline.build_datasets(concrete_data(cfg, task, packing), tokenizer, seed, task, preprocessor,
                                   rows_per_step)


def build_stream(cfg: DataConfig, tokenizer: Any, seed: int = 42, task: str = "causal_lm",
                 rows_per_step: int = 1) -> Any:
    """``tunesmith.data.streaming.build_stream`` (a ``TokenStream`` over ``data.train``) for ``cfg``
    as written."""
    from tunesmith.data import streaming

    return streaming.build_stream(concrete_data(cfg, task), tokenizer, seed, task, rows_per_step)


def load_conversations(cfg: DataConfig, seed: int, tokenizer: Any = None) -> tuple[list[Any], list[Any]]:
    """``tunesmith.data.pipeline.load_conversations`` for ``cfg`` as written (see ``concrete_data``)."""
    from tunesmith.data import pipeline

    return pipeline.load_conversations(concrete_data(cfg), seed, tokenizer)


def check_data_config(cfg: DataConfig) -> None:
    """``tunesmith.data.pipeline.check_data_config`` for ``cfg`` as written: names, paths, the
    template and a packing the data's kind cannot use, before any model is loaded."""
    from tunesmith.data import pipeline

    concrete = concrete_data(cfg, packing=cfg.packing)
    if is_auto(cfg.packing):  # auto never asks for blocks or length buckets the kind cannot use
        concrete = dataclasses.replace(concrete, packing="none")
    pipeline.check_data_config(concrete)


def apply_preset(cfg: DataConfig) -> DataConfig:
    """``tunesmith.data.presets.apply_preset`` with ``data.format=auto`` filled from the preset too."""
    from tunesmith.data import presets

    filled = presets.apply_preset(cfg)
    preset = presets.preset_for(cfg.train, cfg.subset)
    if preset is None or not is_auto(cfg.format):
        return filled
    return dataclasses.replace(filled, format=preset.format)


def data_format(fmt: Optional[str]) -> Optional[str]:
    """A ``data.format`` value as the data layer reads it: ``auto`` -> None (detected from the columns)."""
    return None if fmt is None or is_auto(fmt) else fmt


def to_examples(rows: list[Any], fmt: Optional[str] = "auto", columns: Optional[dict[str, str]] = None,
                label_names: Optional[list[str]] = None) -> Any:
    """``tunesmith.data.formats.to_examples`` for a ``data.format`` value (``auto``: detected)."""
    from tunesmith.data import formats

    return formats.to_examples(rows, data_format(fmt), columns, label_names)


def to_conversations(rows: list[Any], fmt: Optional[str] = "auto", columns: Optional[dict[str, str]] = None) -> Any:
    """``tunesmith.data.formats.to_conversations`` for a ``data.format`` value (``auto``: detected)."""
    from tunesmith.data import formats

    return formats.to_conversations(rows, data_format(fmt), columns)


def prepare_parser(rows: list[Any], fmt: Optional[str] = "auto", columns: Optional[dict[str, str]] = None,
                   label_names: Optional[list[str]] = None, strict: bool = True) -> Any:
    """``tunesmith.data.formats.prepare_parser`` for a ``data.format`` value (``auto``: detected)."""
    from tunesmith.data import formats

    return formats.prepare_parser(rows, data_format(fmt), columns, label_names, strict)


def tokenize_settings(**settings: Any) -> Any:
    """A ``TokenizeSettings`` from ``data.*`` values as written (``template=auto``: the tokenizer's own)."""
    from tunesmith.api.choices.data import template_setting
    from tunesmith.data.tokenize import TokenizeSettings

    if "template" in settings:
        settings["template"] = template_setting(settings["template"])
    return TokenizeSettings(**settings)


def tokenize_examples(tokenizer: Any, examples: list[Any], task: str = "auto", settings: Any = None,
                      **kwargs: Any) -> Any:
    """``tunesmith.data.tokenize.tokenize_examples`` for a ``model.task`` and ``data.*`` settings as
    written: ``task=auto`` is the task the examples' kind is for; ``settings`` may be a ``DataConfig``."""
    from tunesmith.data import tokenize

    if settings is not None and not isinstance(settings, tokenize.TokenizeSettings):
        from dataclasses import fields

        names = {f.name for f in fields(tokenize.TokenizeSettings)}
        settings = tokenize_settings(**{n: getattr(settings, n) for n in names if hasattr(settings, n)})
    return tokenize.tokenize_examples(tokenizer, examples, None if is_auto(task) else task, settings, **kwargs)


def load_example_sets(cfg: DataConfig, seed: int, tokenizer: Any = None) -> Any:
    """``tunesmith.data.pipeline.load_example_sets`` for ``cfg`` as written (see ``concrete_data``)."""
    from tunesmith.data import pipeline

    return pipeline.load_example_sets(concrete_data(cfg), seed, tokenizer)


def load_eval_conversations(cfg: DataConfig, seed: int, limit: int) -> list[Any]:
    """``tunesmith.data.pipeline.load_eval_conversations`` for ``cfg`` as written (see ``concrete_data``)."""
    from tunesmith.data import pipeline

    return pipeline.load_eval_conversations(concrete_data(cfg), seed, limit)
