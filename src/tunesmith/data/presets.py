"""Known hub datasets: the data config each one needs (format, column mapping, splits, labels).

The table mirrors the packaged config group files ``configs/data/<name>.yaml`` (``data=gsm8k``)
and a test keeps the two in step. ``apply_preset`` fills the same values into a config whose
``data.train`` names the hub dataset directly, so ``data.train=openai/gsm8k`` needs no columns.

Example:
    >>> preset_for("openai/gsm8k").columns
    {'question': 'question', 'answer': 'answer'}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from tunesmith.config.schema import DataConfig


@dataclass(frozen=True)
class HubPreset:
    """The data config of one hub dataset. ``columns`` maps canonical name -> hub column."""

    name: str  # the packaged config option: data=<name>
    hub_id: str
    format: str
    subset: Optional[str] = None
    split: str = "train"
    eval_split_name: Optional[str] = None  # None: the hub dataset has no held-out split
    columns: dict[str, str] = field(default_factory=dict)
    label_names: tuple[str, ...] = ()
    max_length: int = 512
    aliases: tuple[str, ...] = ()  # other hub ids that name the same data
    # False where the hub id holds many unrelated subsets (GLUE): a bare id must not pick one.
    match_without_subset: bool = True

    def config_values(self) -> dict[str, Any]:
        """The ``data.*`` keys this preset sets, as written in its YAML file."""
        values: dict[str, Any] = {"train": self.hub_id}
        if self.subset is not None:
            values["subset"] = self.subset
        values["split"] = self.split
        if self.eval_split_name is not None:
            values["eval_split_name"] = self.eval_split_name
        values["format"] = self.format
        if self.columns:
            values["columns"] = dict(self.columns)
        if self.label_names:
            values["label_names"] = list(self.label_names)
        values["max_length"] = self.max_length
        return values


HUB_PRESETS: dict[str, HubPreset] = {p.name: p for p in (
    HubPreset("gsm8k", "openai/gsm8k", format="qa", subset="main", eval_split_name="test",
              columns={"question": "question", "answer": "answer"}, aliases=("gsm8k",)),
    HubPreset("imdb", "stanfordnlp/imdb", format="classification", eval_split_name="test",
              columns={"text": "text", "label": "label"}, label_names=("negative", "positive"),
              max_length=256, aliases=("imdb",)),
    HubPreset("mrpc", "nyu-mll/glue", format="pair_classification", subset="mrpc",
              eval_split_name="validation",
              columns={"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"},
              label_names=("not_equivalent", "equivalent"), max_length=128, aliases=("glue",),
              match_without_subset=False),
    # Alpaca's own columns (instruction, input, output) are what the alpaca format reads.
    HubPreset("alpaca", "tatsu-lab/alpaca", format="alpaca"),
    HubPreset("samsum", "Samsung/samsum", format="seq2seq", eval_split_name="validation",
              columns={"source": "dialogue", "target": "summary"}, aliases=("samsum",)),
)}


def preset_for(hub_id: str, subset: Optional[str] = None) -> Optional[HubPreset]:
    """The preset of ``hub_id`` (case-insensitive, aliases too), or None when there is none.

    Example:
        >>> preset_for("nyu-mll/glue", "mrpc").name
        'mrpc'
        >>> preset_for("nyu-mll/glue") is None  # which GLUE task is meant cannot be guessed
        True
    """
    wanted = hub_id.strip().lower()
    for preset in HUB_PRESETS.values():
        if wanted not in {preset.hub_id.lower(), *(a.lower() for a in preset.aliases)}:
            continue
        if subset is None and preset.match_without_subset:
            return preset
        if subset is not None and subset == preset.subset:
            return preset
    return None


def apply_preset(cfg: DataConfig) -> DataConfig:
    """Fill what the user left unset (no subset, no columns, ...) from ``data.train``'s preset; the
    format (``data.format=auto``) is the run's to fill (``tunesmith.api.choices.data.apply_preset``).

    Values the user set are kept. Example: ``data.train=openai/gsm8k`` becomes
    ``subset=main, columns={question: question, answer: answer}, eval_split_name=test``.
    """
    preset = preset_for(cfg.train, cfg.subset)
    if preset is None:
        return cfg
    changes: dict[str, Any] = {}
    if cfg.subset is None and preset.subset is not None:
        changes["subset"] = preset.subset
    if not cfg.columns and preset.columns:
        changes["columns"] = dict(preset.columns)
    if not cfg.label_names and preset.label_names:
        changes["label_names"] = list(preset.label_names)
    # A separate data.eval or a held-out fraction already says where evaluation rows come from.
    if cfg.eval_split_name is None and cfg.eval is None and cfg.eval_split == 0.0:
        if preset.eval_split_name is not None:
            changes["eval_split_name"] = preset.eval_split_name
    return dataclasses.replace(cfg, **changes) if changes else cfg
