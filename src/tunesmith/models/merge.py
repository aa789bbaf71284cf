"""Rebuilding a run's tuned model, and merging its adapter into a standalone model folder.

The merged folder loads with plain ``transformers`` (``AutoModelForCausalLM.from_pretrained(folder)``
and friends), with no tunesmith or peft installed: safetensors weights, ``config.json``, the
generation config, the tokenizer with its chat template, a README and ``tunesmith_merge.json``.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from tunesmith.cache_dirs import atomic_folder
from tunesmith.config import TrainConfig
from tunesmith.config.run_dir import RunDir
from tunesmith.config.vocabulary import Task
from tunesmith.errors import ConfigError, ModelError, RunDirError

# What a merged folder holds besides the transformers files.
MERGE_RECORD_FILE = "tunesmith_merge.json"
SOURCE_CONFIG_FILE = "tunesmith_source_config.yaml"  # the run's config.yaml, for prompts and templates

MERGE_DTYPES = ("float32", "bfloat16", "float16")  # the dtypes a merged model can be saved in
QUANTIZED_METHODS = ("qlora", "int8")
TASK_CLASSES = {
    "causal_lm": "AutoModelForCausalLM",
    "seq2seq": "AutoModelForSeq2SeqLM",
    "sequence_classification": "AutoModelForSequenceClassification",
}


def read_finished_run(run_dir: str | Path) -> TrainConfig:
    """The saved config of a finished run; a missing or unfinished run raises ``RunDirError``."""
    from tunesmith.config.run_folders import existing_folder

    run = RunDir(existing_folder(run_dir))
    if not run.has_config():
        raise RunDirError(f"{run.path}: not a tunesmith run directory (no {RunDir.CONFIG})")
    run.require_finished()
    return run.read_config()


def label_kwargs(cfg: TrainConfig, task: str) -> dict[str, Any]:
    """Classifier head settings the run trained with, e.g. ``{"num_labels": 2, "id2label": {0: "neg", 1: "pos"}, ...}``.

    An adapter run does not save the base's config, so the head size and label names come from
    ``data.label_names`` in the run's config, exactly as training passed them.
    """
    names = cfg.data.label_names
    if task != Task.SEQUENCE_CLASSIFICATION or not names:
        return {}
    return {"num_labels": len(names), "id2label": dict(enumerate(names)),
            "label2id": {name: i for i, name in enumerate(names)}}


def is_quantized(model: Any) -> bool:
    """True for a model whose weights were loaded 4-bit or 8-bit (bitsandbytes and the like)."""
    return bool(getattr(model, "is_quantized", False) or getattr(model, "hf_quantizer", None) is not None
                or getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


def _quantization_kwargs(cfg: TrainConfig, device: str) -> dict[str, Any]:
    try:
        from tunesmith.models.quantization import quantization_kwargs
    except ImportError:
        import warnings

        warnings.warn(f"peft.method={cfg.peft.method}: tunesmith.models.quantization is not available; "
                      "loading the base model unquantized", stacklevel=3)
        return {}
    return dict(quantization_kwargs(cfg.peft, device))


def dequantize(model: Any) -> Any:
    """A float32 copy of a 4-bit/8-bit model (same class and config, no quantization)."""
    import copy

    import torch

    try:
        from tunesmith.models.quantization import dequantized_state_dict
    except ImportError as err:
        raise ModelError("the base model's weights are quantized and tunesmith.models.quantization "
                         "(dequantized_state_dict) is not available to turn them back into floats") from err
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = type(model)._from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(dequantized_state_dict(model), strict=False)
    # Tied weights (e.g. lm_head = embed_tokens) appear under one name only; they are not missing.
    aliases = {n for n, _ in plain.named_parameters(remove_duplicate=False)} - {n for n, _ in plain.named_parameters()}
    missing = [k for k in missing if k not in aliases]
    if missing or unexpected:
        raise ModelError(f"dequantizing the base model left weights unmatched: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    plain.tie_weights()
    return plain


def load_tuned_model(run_dir: str | Path, cfg: TrainConfig, device: str = "cpu", dtype: Any = None,
                     quantize: bool = False) -> tuple[Any, Any, str]:
    """The run's tuned model (a ``PeftModel`` over its base, or the full weights), tokenizer and task.

    Args:
        run_dir: a finished run directory.
        cfg: its saved config (``read_finished_run``).
        device: where the weights go.
        dtype: weight dtype (``None``: transformers' default).
        quantize: load a qlora/int8 run's base quantized again, as in training. Without it the base
            is loaded in float, and a checkpoint that is itself quantized is dequantized.
    """
    from tunesmith.models.loading import load_model, load_tokenizer

    path, m = Path(run_dir), cfg.model
    tokenizer = load_tokenizer(str(path))  # the run's copy, with the exact chat template used
    task = run_task(path, cfg)
    if not RunDir(path).has_adapter():  # full fine-tuning: the weights are in the run
        return (load_model(str(path), task, dtype, device, m.trust_remote_code, hub_kernels=m.hub_kernels),
                tokenizer, task)

    from peft import PeftModel

    kwargs = label_kwargs(cfg, task)
    if quantize and cfg.peft.method in QUANTIZED_METHODS:
        extra = _quantization_kwargs(cfg, device)
        dtype = extra.pop("dtype", extra.pop("torch_dtype", dtype))
        kwargs.update(extra)
    base = load_model(m.name_or_path, task, dtype, device, m.trust_remote_code, m.revision,
                      allow_pickle=m.allow_pickle, hub_kernels=m.hub_kernels, **kwargs)
    if not quantize and is_quantized(base):
        base = dequantize(base).to(device)
    if quantize and is_quantized(base) and device == "cpu":
        from tunesmith.models.quantization import guard_cpu_packed_weights

        # bitsandbytes' CPU eval path repacks 4-bit weights in place and fails on layers narrower
        # than 64; the dequantize-and-matmul path is correct for every shape.
        guard_cpu_packed_weights(base)
    if getattr(base.config, "pad_token_id", None) is None:
        base.config.pad_token_id = tokenizer.pad_token_id  # as in training: decoder classifiers need it
    return PeftModel.from_pretrained(base, str(path)), tokenizer, task


def run_task(run_dir: Path, cfg: TrainConfig) -> str:
    """The task a finished run trained: the one its ``run.json`` records; for a run that records none,
    its saved ``model.task`` when that names a task, else the architecture's (``task_from_config``)."""
    from tunesmith.models.loading import load_model_config, task_from_config

    recorded = RunDir(run_dir).read_record().get("task")
    tasks = [t.value for t in Task]
    if recorded in tasks:
        return recorded
    if cfg.model.task in tasks:
        return cfg.model.task
    m, has_adapter = cfg.model, RunDir(run_dir).has_adapter()
    config = (load_model_config(m.name_or_path, m.trust_remote_code, m.revision) if has_adapter
              else load_model_config(str(run_dir), m.trust_remote_code))
    return task_from_config(config).value


def run_weights_dtype(run_dir: str | Path) -> str:
    """The dtype a finished run's weights were stored in: its base checkpoint's, or a full run's own."""
    from tunesmith.models.loading import load_model_config

    src = Path(run_dir)
    cfg = read_finished_run(src)
    has_adapter = RunDir(src).has_adapter()
    weights_from = cfg.model.name_or_path if has_adapter else str(src)
    return stored_dtype(load_model_config(weights_from, cfg.model.trust_remote_code,
                                          cfg.model.revision if has_adapter else None))


def stored_dtype(model_config: Any) -> str:
    """The dtype a checkpoint's config.json records (``"bfloat16"``); ``"float32"`` when unknown."""
    value = getattr(model_config, "dtype", None) or getattr(model_config, "torch_dtype", None)
    name = str(value).removeprefix("torch.") if value is not None else "float32"
    return name if name in MERGE_DTYPES else "float32"


def _check_out_dir(run_dir: Path, out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirError(f"{out_dir}: exists and is not a folder; choose another output folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise RunDirError(f"{out_dir}: is not empty; choose another output folder or pass overwrite=True "
                          "(--overwrite) to replace what is there")
    src, out = run_dir.resolve(), out_dir.resolve()
    if out == src or out in src.parents:  # overwriting would delete the run being merged
        raise RunDirError(f"{out_dir}: would replace the run directory {run_dir}; choose another output folder")


def merge_run(run_dir: str | Path, out_dir: str | Path, dtype: str, overwrite: bool = False) -> Path:
    """Merge a finished run into a standalone model folder that plain transformers can load.

    The adapter is merged in float32 into the base model's float weights: a qlora/int8 run's base is
    loaded unquantized (never merged into 4-bit/8-bit weights). A full fine-tuning run is re-saved.

    Args:
        run_dir: a finished run directory.
        out_dir: where the model folder goes; it must be empty or missing unless ``overwrite``.
        dtype: ``float32``, ``bfloat16`` or ``float16`` (``tunesmith.api.exports.merge_run`` also takes
            ``auto``: the dtype of the base checkpoint, or of a full run's weights, ``run_weights_dtype``).
        overwrite: replace a non-empty ``out_dir``.

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        ConfigError: for an unknown ``dtype``.
        RunDirError: for a missing or unfinished run, or an ``out_dir`` that may not be written.
    """
    if dtype not in MERGE_DTYPES:
        raise ConfigError(f"dtype: {dtype!r} is not allowed; allowed: auto, {', '.join(MERGE_DTYPES)}")
    src, out = Path(run_dir), Path(out_dir)
    cfg = read_finished_run(src)
    _check_out_dir(src, out, overwrite)

    import torch

    has_adapter = RunDir(src).has_adapter()
    target = dtype
    # Merge in float32 on the CPU so W + B·A·scale keeps full precision; only the final cast rounds.
    model, tokenizer, task = load_tuned_model(src, cfg, device="cpu", dtype=torch.float32, quantize=False)
    if has_adapter:
        model = model.merge_and_unload(safe_merge=True)  # safe_merge: refuse NaN weights
    model = model.to(getattr(torch, target))
    model.config.dtype = target

    record = merge_record(src, cfg, task, target, has_adapter)
    with atomic_folder(out) as tmp:
        model.save_pretrained(tmp)  # safetensors, config.json, generation_config.json
        tokenizer.save_pretrained(tmp)  # tokenizer files and chat_template.jinja
        shutil.copyfile(RunDir(src).config_file, tmp / SOURCE_CONFIG_FILE)
        (tmp / MERGE_RECORD_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
        (tmp / "README.md").write_text(merge_readme(out.name, record), encoding="utf-8")
    return out


def merge_record(run_dir: Path, cfg: TrainConfig, task: str, dtype: str, has_adapter: bool) -> dict[str, Any]:
    """What ``tunesmith_merge.json`` says about the merged folder's origin."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        run = RunDir(run_dir).read_record()
    except (OSError, ValueError):
        run = {}
    try:
        tunesmith_version = version("tunesmith")
    except PackageNotFoundError:
        tunesmith_version = None
    return {
        "source_run": str(run_dir.resolve()),
        "base_model": cfg.model.name_or_path,
        "method": cfg.peft.method,
        "adapter_merged": has_adapter,
        "task": task,
        "transformers_class": TASK_CLASSES[task],
        "dtype": dtype,
        "run_finished": run.get("finished"),
        "global_step": run.get("global_step"),
        "merged_at": datetime.now().isoformat(timespec="seconds"),
        "tunesmith_version": tunesmith_version,
    }


def merge_readme(name: str, record: dict[str, Any]) -> str:
    """A short model card: where the weights came from and how to load them."""
    how = "adapter merged into the base weights" if record["adapter_merged"] else "full fine-tuned weights"
    cls = record["transformers_class"]
    parts = [
        f"---\nlibrary_name: transformers\ntags:\n- tunesmith\n- {record['method']}\n---\n\n# {name}\n\n",
        f"Fine-tuned with tunesmith ({record['method']}, {how}) from base model `{record['base_model']}`.\n",
        f"Source run: `{record['source_run']}`. Weights: {record['dtype']} safetensors.\n\n",
    ]
    if record["method"] in QUANTIZED_METHODS:
        parts.append("The adapter was trained on a quantized base; it was merged in float32 into the base's "
                     "float weights, never into 4-bit/8-bit weights.\n\n")
    parts += [
        "Loads with transformers alone:\n\n",
        f"```python\nfrom transformers import {cls}, AutoTokenizer\n\n",
        f'model = {cls}.from_pretrained("{name}")\ntokenizer = AutoTokenizer.from_pretrained("{name}")\n```\n\n',
        f"`{MERGE_RECORD_FILE}` records the merge; `{SOURCE_CONFIG_FILE}` is the run's config.\n",
    ]
    return "".join(parts)
