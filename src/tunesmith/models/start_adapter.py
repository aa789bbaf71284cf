"""``model.adapter``: start training from an adapter made before instead of a new one.

A supervised run's LoRA adapter is the usual start of preference and GRPO training
(``model.adapter=runs/sft``): the adapter is loaded onto the base, measured as the "before" model,
and trained further; the run saves the continued adapter, which loads onto the same base as any
other run's. The adapter's own shape (rank, alpha, target modules, DoRA) is kept: ``peft.*`` keys
that ask for another shape are an error rather than silently ignored.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tunesmith.config.run_dir import RunDir
from tunesmith.config.schema import PeftConfig
from tunesmith.errors import ConfigError

logger = logging.getLogger(__name__)

ADAPTER_METHODS = ("lora", "dora", "qlora", "int8")
# peft.* keys that describe the adapter's shape, with the adapter_config.json field each one sets.
SHAPE_KEYS = {"r": "r", "alpha": "lora_alpha", "use_rslora": "use_rslora", "bias": "bias",
              "dropout": "lora_dropout", "modules_to_save": "modules_to_save"}


def adapter_folder(path: str, base_model: str) -> Path:
    """The folder holding ``adapter_config.json`` for ``model.adapter=path``: a peft adapter folder or
    a finished tunesmith run directory of the same base model.

    Example:
        ``adapter_folder("runs/sft", "smollm2-135m-instruct")`` -> ``Path("runs/sft")``.
    """
    folder = Path(path).expanduser()
    run = RunDir(folder)
    if not folder.is_dir():
        raise ConfigError(f"model.adapter: {path!r} is not a folder; give a tunesmith run directory or a peft "
                          "adapter folder (one with adapter_config.json)")
    if not run.has_adapter():
        what = ("a run that trained full weights (peft.method=full), not an adapter" if run.has_config()
                else "a folder without adapter_config.json")
        raise ConfigError(f"model.adapter: {path!r} is {what}; give a run directory trained with peft.method="
                          "lora / dora / qlora / int8, or a peft adapter folder")
    if run.has_config():
        if not run.is_finished():
            raise ConfigError(f"model.adapter: {path!r} is a run that has not finished (no {RunDir.RECORD}); "
                              "finish it (run its command again) or give a finished run")
        trained_on = run.read_config().model.name_or_path
        if trained_on != base_model:
            raise ConfigError(f"model.adapter: {path!r} was trained on model {trained_on!r}, but this run loads "
                              f"model.name_or_path={base_model!r}; set model.name_or_path={trained_on}")
    return folder


def read_adapter_config(folder: Path) -> dict[str, Any]:
    """``adapter_config.json`` of ``folder`` as a dict."""
    try:
        return json.loads((folder / RunDir.ADAPTER_CONFIG).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"model.adapter: cannot read {folder / RunDir.ADAPTER_CONFIG}: {err}") from err


def check_peft_settings(peft: PeftConfig, adapter: dict[str, Any], path: str) -> list[str]:
    """Errors for ``peft.*`` keys that ask for another adapter than the one at ``path``; returns the
    lines that say which settings come from it.

    Example:
        ``check_peft_settings(PeftConfig(r=8), {"r": 16, ...}, "runs/sft")`` raises
        ``model.adapter: runs/sft is a rank-16 adapter, but peft.r=8 ...``.
    """
    if peft.method not in ADAPTER_METHODS:
        raise ConfigError(f"model.adapter: continues an adapter, but peft.method={peft.method} trains the weights "
                          f"themselves; use peft.method={'dora' if adapter.get('use_dora') else 'lora'} (or qlora / "
                          "int8 for a quantized base), or leave model.adapter unset")
    if adapter.get("peft_type", "LORA") != "LORA":
        raise ConfigError(f"model.adapter: {path} is a {adapter.get('peft_type')} adapter; tunesmith continues "
                          "LoRA and DoRA adapters")
    if (peft.method == "dora") != bool(adapter.get("use_dora")):
        kind = "a DoRA" if adapter.get("use_dora") else "a plain LoRA"
        raise ConfigError(f"model.adapter: {path} is {kind} adapter, but peft.method={peft.method}; "
                          f"set peft.method={'dora' if adapter.get('use_dora') else 'lora'}")
    defaults = PeftConfig()
    for key, field_name in SHAPE_KEYS.items():
        mine, theirs = getattr(peft, key), adapter.get(field_name)
        if key == "modules_to_save":
            mine, theirs = sorted(mine), sorted(theirs or [])
        if mine != getattr(defaults, key) and mine != theirs:
            raise ConfigError(f"model.adapter: {path} has {field_name}={theirs!r}, but peft.{key}={mine!r}; "
                              f"a continued adapter keeps its shape: drop peft.{key} or set it to {theirs!r}")
    if list(peft.target_modules) != list(defaults.target_modules):
        raise ConfigError(f"model.adapter: {path} keeps its own target modules ({adapter.get('target_modules')}); "
                          f"peft.target_modules={list(peft.target_modules)} cannot change them: drop the key")
    targets = adapter.get("target_modules")
    shown = sorted(targets) if isinstance(targets, list) else targets
    return [f"Adapter: continuing {path} (rank {adapter.get('r')}, alpha {adapter.get('lora_alpha')}, "
            f"modules {shown}); its shape replaces peft.r / alpha / dropout / target_modules / modules_to_save"]


def check_start_adapter(path: str, base_model: str, peft: PeftConfig) -> tuple[Path, list[str]]:
    """The adapter folder of ``model.adapter=path`` and the lines that describe it; a ``ConfigError``
    when it cannot continue in this run (checked before anything is loaded)."""
    folder = adapter_folder(path, base_model)
    return folder, check_peft_settings(peft, read_adapter_config(folder), path)


def load_start_adapter(model: Any, path: str, base_model: str, peft: PeftConfig, task_type: str) -> Any:
    """``model`` with the adapter at ``path`` loaded for training (a trainable ``PeftModel``).

    Args:
        model: the base model, as ``load_base_model`` returns it.
        path: ``model.adapter``.
        base_model: ``model.name_or_path`` (a run directory must have been trained on it).
        peft: the run's ``peft`` section (its method must be an adapter method; see ``check_peft_settings``).
        task_type: peft's task type of this run (``CAUSAL_LM``, ``SEQ_CLS``, ...).
    """
    from peft import PeftModel

    folder, notes = check_start_adapter(path, base_model, peft)
    theirs = read_adapter_config(folder).get("task_type")
    if theirs and theirs != task_type:
        raise ConfigError(f"model.adapter: {path} was made for task type {theirs}, but this run trains "
                          f"{task_type}; set model.task to match or start a new adapter")
    for line in notes:
        logger.info(line)
    try:
        return PeftModel.from_pretrained(model, str(folder), is_trainable=True)
    except (ValueError, RuntimeError, KeyError) as err:  # peft names the modules or shapes that do not fit
        raise ConfigError(f"model.adapter: {path} does not fit this model: {err}") from err
