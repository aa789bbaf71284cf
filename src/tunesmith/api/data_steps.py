"""The data pipeline one step at a time: a dataset config, a collator, a device-aware DataLoader.

These are the steps ``FineTuner.train`` takes itself, offered on their own for code that wants to
look at (or feed its own loop with) the batches::

    dataset_config = generate_dataset_config("arith", preprocessing_steps=["tokenization", "padding"],
                                             custom_config={"batch_size": 32})
    collator = get_custom_data_collator(dataset_config, batch_size=32, padding=True)
    loader = device_aware_data_loading(dataset_config, collator, target_device="gpu")

A dataset config is an ordinary ``TrainConfig``; every step reads and records settings there, so
``FineTuner(dataset_config).train()`` trains on exactly these batches.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Optional

from tunesmith.config import TrainConfig, load_config, update_config
from tunesmith.errors import ConfigError

logger = logging.getLogger(__name__)

# preprocessing step -> the config keys it sets. Tokenizing and padding always happen (as in
# training); naming them is allowed so that a list written for other tools reads the same here.
PREPROCESSING_STEPS: dict[str, dict[str, Any]] = {
    "tokenization": {}, "tokenize": {}, "padding": {}, "pad": {}, "masking": {},
    "truncation": {"data.truncation": "truncate_end"},
    "packing": {"data.packing": "pack"},
    "deduplication": {"data.dedupe": True}, "dedupe": {"data.dedupe": True},
}


def generate_dataset_config(dataset_name: str, preprocessing_steps: Iterable[str] = (),
                            custom_config: Optional[dict[str, Any]] = None,
                            model_id: Optional[str] = None) -> TrainConfig:
    """A checked config for one dataset (the packaged defaults plus these settings).

    Args:
        dataset_name: a built-in or registered dataset, a hub dataset or a local file (``data.train``).
        preprocessing_steps: named steps: ``tokenization`` / ``padding`` / ``masking`` (always done),
            ``truncation`` (``data.truncation=truncate_end``), ``packing`` (``data.packing=pack``),
            ``deduplication`` (``data.dedupe``), or a registered row transform (``data.transforms``).
        custom_config: more settings, any key ``update_config`` takes (``{"batch_size": 32}``).
        model_id: the model whose tokenizer tokenizes the data (``model.name_or_path``).

    Example:
        ``generate_dataset_config("arith", ["tokenization", "truncation"], {"batch_size": 32}).train.batch_size`` -> ``32``
    """
    from tunesmith.api.components import check_components
    from tunesmith.data.transforms import ROW_TRANSFORMS

    updates: dict[str, Any] = {"data.train": str(dataset_name)}
    if model_id is not None:
        updates["model.name_or_path"] = str(model_id)
    transforms: list[str] = []
    for step in ([preprocessing_steps] if isinstance(preprocessing_steps, str) else list(preprocessing_steps)):
        if step in PREPROCESSING_STEPS:
            updates.update(PREPROCESSING_STEPS[step])
        elif step in ROW_TRANSFORMS:
            transforms.append(step)
        else:
            known = sorted(PREPROCESSING_STEPS) + ROW_TRANSFORMS.names()
            raise ConfigError(f"preprocessing_steps: unknown step {step!r}. Known: {', '.join(known)} "
                              "(register your own with tunesmith.register_row_transform)")
    if transforms:
        updates["data.transforms"] = transforms
    cfg = load_config()
    update_config(cfg, updates, source="generate_dataset_config")
    if custom_config:
        update_config(cfg, dict(custom_config), source="custom_config")
    check_components(cfg)
    return cfg


def get_custom_data_collator(dataset_config: TrainConfig, batch_size: Optional[int] = None,
                             padding: Any = True, collator: Optional[str] = None,
                             device: Optional[str] = None) -> Any:
    """The collator training uses for this config (``data.collator``), built for its tokenizer.

    Args:
        dataset_config: from ``generate_dataset_config`` (or any ``TrainConfig``); updated in place
            with ``batch_size`` and ``collator``, so the DataLoader and training use them.
        batch_size: sequences per batch (``train.batch_size``).
        padding: True or ``"longest"``: each batch is padded to its longest example (the only
            padding tunesmith does; ``data.packing=padding_free`` removes padding altogether).
        collator: a registered collator name or ``package.module:Class`` (``data.collator``), e.g.
            transformers' ``DataCollatorWithPadding`` registered with ``register_collator``.
        device: where the batches go (``model.device``); decides the pad multiple (8 on CUDA).

    Example:
        ``get_custom_data_collator(cfg, batch_size=32)([{"input_ids": [5, 6], "labels": [5, 6]}])["input_ids"]`` -> ``tensor([[5, 6]])``
    """
    from tunesmith.api.choices.batching import build_collator

    if padding not in (True, "longest"):
        raise ConfigError(f"padding: {padding!r} is not supported; tunesmith pads each batch to its longest "
                          "example (padding=True); for batches without padding set data.packing=padding_free, "
                          "and for fixed-length blocks data.packing=pack")
    updates: dict[str, Any] = {}
    if batch_size is not None:
        _say_if_replaced(dataset_config.train.batch_size, batch_size, "train.batch_size")
        updates["train.batch_size"] = batch_size
    if collator is not None:
        updates["data.collator"] = collator
    if device is not None:
        updates["model.device"] = device
    if updates:
        update_config(dataset_config, updates, source="get_custom_data_collator")
    tokenizer, task, model_type = _tokenizer_for(dataset_config)
    return build_collator(dataset_config.data.collator, task, tokenizer, dataset_config.data.packing,
                          _device(dataset_config.model.device), args=dataset_config.data.collator_args,
                          model_type=model_type)


def device_aware_data_loading(dataset_config: TrainConfig, collator: Any = None,
                              target_device: Optional[str] = None, shuffle: bool = True) -> Any:
    """A DataLoader over the tokenized training set, with workers and pinned memory for the device.

    Args:
        dataset_config: the config (``generate_dataset_config``); its batch size, packing and seed apply.
        collator: from ``get_custom_data_collator``; None builds the config's own.
        target_device: ``cpu``, ``cuda`` / ``gpu``, ``cuda:N``, ``mps`` or ``auto`` (``model.device``).
        shuffle: draw the rows in a seeded random order (``train.seed``), as training does.

    Example:
        ``next(iter(device_aware_data_loading(cfg, collator, target_device="gpu")))["input_ids"].is_pinned()`` -> ``True``
    """
    from tunesmith.data.loading import build_dataloader
    from tunesmith.api.choices.batching import resolve_packing
    from tunesmith.api.data_entry import build_datasets

    if target_device is not None:
        update_config(dataset_config, {"model.device": target_device}, source="device_aware_data_loading")
    if collator is None:
        collator = get_custom_data_collator(dataset_config)
    tokenizer, task, model_type = _tokenizer_for(dataset_config)
    cfg = dataset_config
    bundle = build_datasets(cfg.data, tokenizer, cfg.train.seed, task)
    packing = resolve_packing(cfg.data.packing, task, model_type)
    return build_dataloader(bundle.train, collator, cfg.train.batch_size, _device(cfg.model.device), shuffle=shuffle,
                            seed=cfg.train.seed, packing=packing)


def _tokenizer_for(cfg: TrainConfig) -> tuple[Any, str, Optional[str]]:
    """The config's tokenizer (with its template, as training sets it), task and model type."""
    from tunesmith.api.components import check_components
    from tunesmith.api.model_setup import load_tokenizer_and_task
    from tunesmith.models.loading import load_model_config

    check_components(cfg)  # the named format, collator, ... exist, as FineTuner(cfg) checks them
    tokenizer, task = load_tokenizer_and_task(cfg)
    m = cfg.model
    model_type = getattr(load_model_config(m.name_or_path, m.trust_remote_code, m.revision), "model_type", None)
    return tokenizer, task, model_type


def _device(spec: str) -> str:
    """``auto`` / ``cuda`` / ``cpu`` resolved for this machine (``cuda`` without a GPU is an error)."""
    from tunesmith.api.choices.runtime import resolve_device

    return resolve_device(spec)


def _say_if_replaced(current: Any, new: Any, key: str) -> None:
    """Warn when ``new`` replaces a value the user set before (not the packaged default)."""
    section, leaf = key.split(".")
    packaged = getattr(getattr(load_config(), section), leaf)
    if current != new and current != packaged:
        logger.warning("%s=%s from get_custom_data_collator replaces %s=%s set before; %s is used",
                       key, new, key, current, new)


__all__ = ["PREPROCESSING_STEPS", "device_aware_data_loading", "generate_dataset_config", "get_custom_data_collator"]
