"""Every pluggable component a config names, checked before anything heavy is loaded.

Each component kind has a registry and a ``register_*`` decorator; a config selects an entry by
its registered name or by ``package.module:attribute``, and passes arguments in ``<key>_args``:

| kind | config key | arguments | register with |
|---|---|---|---|
| model loader | ``model.loader`` | ``model.loader_args`` | ``register_model_loader`` |
| dataset | ``data.train`` / ``data.eval`` | ``data.dataset_args`` | ``register_dataset`` |
| preprocessor | ``data.preprocessor`` | ``data.preprocessor_args`` | ``register_preprocessor`` |
| collator | ``data.collator`` | ``data.collator_args`` | ``register_collator`` |
| trainer | ``train.trainer`` | ``train.trainer_args`` | ``register_trainer`` |
| callback | ``train.callbacks`` | ``train.callback_args.<name>`` | ``register_callback`` |
| metric | ``eval.metric`` | | ``register_metric`` |
| reward function | ``train.grpo.rewards`` | ``train.grpo.reward_args.<name>`` | ``register_reward`` |
| inference handler | ``eval.inference_handler`` | ``eval.inference_handler_args`` | ``register_inference_handler`` |
"""

from __future__ import annotations

from typing import Any

from tunesmith.config.vocabulary import Task
from tunesmith.config import TrainConfig
from tunesmith.errors import ConfigError


def check_components(cfg: TrainConfig) -> None:
    """Resolve every component the config names and check its arguments against its signature.

    Dotted paths are imported here, so a typo in a module name or an argument fails in
    milliseconds, with the config key, the bad value and what is allowed.

    Raises:
        ConfigError: an unknown name, a module that cannot be imported, an unknown or missing argument.
    """
    from tunesmith.api.grpo_setup import check_grpo
    from tunesmith.data.collators import COLLATORS
    from tunesmith.evaluation.metrics import resolve_metric
    from tunesmith.training.callbacks import check_callbacks
    from tunesmith.api.data_entry import check_data_config
    from tunesmith.data.pipeline import has_held_out
    from tunesmith.data.preprocessor import PREPROCESSORS
    from tunesmith.inference.handler import INFERENCE_HANDLERS
    from tunesmith.models.loading import MODEL_LOADERS
    from tunesmith.api.choices.task import infer_task
    from tunesmith.models.loader_args import check_loader_args
    from tunesmith.training.trainers import TRAINERS, check_trainer_factory

    check_data_config(cfg.data)  # data.train / data.eval with data.dataset_args, formats, transforms
    if cfg.data.streaming:
        from tunesmith.api.resolved_run import check_streaming_length

        check_streaming_length(cfg)  # train.max_steps, before any folder is made
    _check_evaluation_has_data(cfg, has_held_out(cfg.data))
    MODEL_LOADERS.check(cfg.model.loader, cfg.model.loader_args)
    # with the default loader: against from_pretrained and the model's config.json
    check_loader_args(cfg.model, lambda config: infer_task(config, cfg.model.task))
    if cfg.model.adapter:
        from tunesmith.models.start_adapter import check_start_adapter

        check_start_adapter(cfg.model.adapter, cfg.model.name_or_path, cfg.peft)  # model.adapter and peft.*
    PREPROCESSORS.check(cfg.data.preprocessor, cfg.data.preprocessor_args)
    _check_chosen_by_task(COLLATORS, "data.collator", cfg.data.collator, cfg.data.collator_args)
    if cfg.train.trainer != "auto":
        check_trainer_factory(cfg.train.trainer)  # callable with model=, args=, before its arguments are checked
    _check_chosen_by_task(TRAINERS, "train.trainer", cfg.train.trainer, cfg.train.trainer_args)
    check_grpo(cfg)  # train.grpo.rewards and their arguments
    INFERENCE_HANDLERS.check(cfg.eval.inference_handler, cfg.eval.inference_handler_args)
    check_callbacks(cfg.train)
    if cfg.eval.metric != "auto":
        resolve_metric(cfg.eval.metric)


def _check_evaluation_has_data(cfg: TrainConfig, held_out: bool) -> None:
    """Evaluation during training (``train.eval_steps`` / ``train.eval_strategy``) needs held-out data."""
    t = cfg.train
    if held_out or not (t.eval_strategy in ("steps", "epoch") or (t.eval_strategy == "auto" and t.eval_steps > 0)):
        return
    key, value = (("train.eval_steps", t.eval_steps) if t.eval_strategy in ("auto", "steps")
                  else ("train.eval_strategy", t.eval_strategy))
    raise ConfigError(f"{key}: {value!r} evaluates during training, but data.train={cfg.data.train!r} gives no "
                      "held-out data; set data.eval=FILE or data.eval_split=0.1 (built-in datasets bring their "
                      f"own test split), or turn evaluation off with {key}="
                      f"{'0' if key == 'train.eval_steps' else 'no'}")


def check_metric_fits_task(cfg: TrainConfig) -> None:
    """``train.best_metric`` (used by ``train.keep_best`` / early stopping) must be one the task's
    evaluation reports: ``accuracy`` only for classifiers; ``loss`` for every task. The task is
    ``model.task`` or read from the model's ``config.json`` (nothing else is loaded)."""
    from tunesmith.api.choices.task import infer_task
    from tunesmith.models.loading import load_model_config

    t = cfg.train
    if not (t.keep_best or t.early_stopping_patience) or t.best_metric == "loss":
        return
    m = cfg.model
    task = infer_task(load_model_config(m.name_or_path, m.trust_remote_code, m.revision), m.task)
    if t.best_metric == "accuracy" and task != Task.SEQUENCE_CLASSIFICATION:
        used_by = "train.keep_best" if t.keep_best else "train.early_stopping_patience"
        raise ConfigError(f"train.best_metric: 'accuracy' is measured for sequence classifiers only, and this model "
                          f"is {task} (for {used_by}); use train.best_metric=loss")


def _check_chosen_by_task(registry: Any, key: str, name: str, args: dict[str, Any]) -> None:
    """``auto`` is resolved by task later, so arguments need a named entry to be checked against."""
    if name != "auto":
        registry.check(name, args)
    elif args:
        raise ConfigError(f"{key}_args: set {key} to the one these arguments are for "
                          f"(with {key}=auto it is chosen by the model's task)")


def build_preprocessor(cfg: TrainConfig) -> Any:
    """The preprocessor ``data.preprocessor`` names, built with ``data.preprocessor_args``."""
    from tunesmith.data.preprocessor import PREPROCESSORS

    return PREPROCESSORS.build(cfg.data.preprocessor, cfg.data.preprocessor_args)


def build_inference_handler(cfg: TrainConfig) -> Any:
    """The handler ``eval.inference_handler`` names; its constructor may take ``data.system_prompt``."""
    from tunesmith.inference.handler import INFERENCE_HANDLERS

    return INFERENCE_HANDLERS.build(cfg.eval.inference_handler, cfg.eval.inference_handler_args,
                                    supplied={"system_prompt": cfg.data.system_prompt})


def build_model_loader(cfg: TrainConfig) -> Any:
    """``loader(name_or_path, task, dtype, device, **kwargs)`` for ``model.loader`` with its arguments."""
    from tunesmith.models.loading import MODEL_LOADERS

    return MODEL_LOADERS.build(cfg.model.loader, cfg.model.loader_args)
