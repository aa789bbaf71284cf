"""Loading what a run or a ``FineTuner`` works with, from the config: the runtime (device and
precision), the tokenizer with its chat template, and the base model.

Shared by ``FineTuner`` (generate, evaluate, inspect) and ``TrainingRun`` (train), which pass the
config and receive the objects; neither hands itself to these functions.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from tunesmith.config.vocabulary import Task
from tunesmith.config import TrainConfig

logger = logging.getLogger(__name__)


def runtime(cfg: TrainConfig) -> tuple[str, str]:
    """The device (``model.device``) and training precision (``train.precision``) resolved here;
    applies ``train.num_threads``."""
    import torch

    from tunesmith.api.choices.runtime import resolve_device, resolve_precision

    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    device = resolve_device(cfg.model.device)
    return device, resolve_precision(cfg.train.precision, device)


def autocast(device: str, precision: str) -> Any:
    """``torch.autocast`` for bf16 / fp16 on ``device``; a no-op context for fp32."""
    import torch

    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device.split(":")[0], dtype=dtype)
    return contextlib.nullcontext()


def model_task(cfg: TrainConfig) -> str:
    """The model's task: ``model.task``, or inferred from the model's config."""
    from tunesmith.api.choices.task import infer_task, requested_task
    from tunesmith.models.loading import load_model_config

    m = cfg.model
    return infer_task(load_model_config(m.name_or_path, m.trust_remote_code, m.revision),
                      requested_task(cfg.train.trainer, m.task))


def load_tokenizer_and_task(cfg: TrainConfig) -> tuple[Any, str]:
    """The tokenizer (with the configured chat template, saved with the run so inference renders
    prompts exactly as training did) and the model's task."""
    from tunesmith.api.choices.data import choose_template
    from tunesmith.config.vocabulary import is_auto
    from tunesmith.data.templates import OWN_TEMPLATE, say_plain_once, template_named
    from tunesmith.models.loading import load_tokenizer

    m = cfg.model
    task = model_task(cfg)
    tokenizer = load_tokenizer(m.name_or_path, m.trust_remote_code, m.revision)
    template = choose_template(cfg.data.template, task, tokenizer)  # data.template
    if template != OWN_TEMPLATE:  # the tokenizer carries the chosen template from here on
        if is_auto(cfg.data.template):  # no template of its own: plain text (data/templates.py)
            say_plain_once(tokenizer)
        tokenizer.chat_template = template_named(tokenizer, template, cfg.data.tags).jinja
    return tokenizer, task


def load_base_model(cfg: TrainConfig, tokenizer: Any, task: str, device: str, precision: str,
                    label_names: list[str]) -> Any:
    """The base model, on ``device``, quantized when ``peft.method`` asks for it, with the configured
    attention and hub kernels; a classifier gets ``label_names`` as its labels."""
    from tunesmith.api.components import build_model_loader
    from tunesmith.models.hub_kernels import apply_hub_kernels
    from tunesmith.api.choices.runtime import resolve_weight_dtype
    from tunesmith.models.quantization import (is_quantized_method, prepare_quantized_for_training,
                                               quantization_kwargs)
    from tunesmith.api.choices.training import attention_kwargs

    m = cfg.model
    extra: dict[str, Any] = {}
    if task == Task.SEQUENCE_CLASSIFICATION and label_names:
        extra = {"num_labels": len(label_names), "id2label": dict(enumerate(label_names)),
                 "label2id": {n: i for i, n in enumerate(label_names)}}
    method = cfg.peft.method
    if is_quantized_method(method):
        extra.update(quantization_kwargs(cfg.peft, device))  # 4-bit or 8-bit base
    extra.update(attention_kwargs(cfg.train.attention, device))  # train.attention
    loader = build_model_loader(cfg)  # model.loader: auto unless the config names another
    model = loader(m.name_or_path, task, resolve_weight_dtype(m.dtype, device, precision), device,
                   trust_remote_code=m.trust_remote_code, revision=m.revision,
                   allow_pickle=m.allow_pickle, **extra)
    note = apply_hub_kernels(model, m.hub_kernels, device)  # model.hub_kernels, for every loader
    if note:
        logger.info(note)
    if is_quantized_method(method):
        # Before any evaluation: keeps the 4-bit layers on kernels whose backward is correct.
        model = prepare_quantized_for_training(model, method)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id  # decoder classifiers need it
    return model


@dataclass
class ModelContext:
    """A model in use and what using it needs: its tokenizer, task, config, device and precision.

    What ``FineTuner.evaluate`` and a training run hand to the held-out measurements
    (``tunesmith.api.held_out``). ``preprocessor``: a user's own, or None for the default.
    """

    config: TrainConfig
    model: Any
    tokenizer: Any
    task: str
    device: str
    precision: str
    preprocessor: Any = None

    def autocast(self) -> Any:
        """The mixed-precision context the model runs under (``autocast(device, precision)``)."""
        return autocast(self.device, self.precision)
