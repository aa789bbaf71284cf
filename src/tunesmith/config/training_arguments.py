"""The one table between tunesmith's config keys and ``transformers.TrainingArguments`` fields.

It is read in both directions: ``tunesmith.training.arguments`` builds the ``TrainingArguments`` of a
run from it, and ``training_arguments_updates`` (``FineTuner(trainer_config=TrainingArguments(...))``)
reads a user's ``TrainingArguments`` back into config keys with it. The fields whose names users
know from transformers are also accepted as aliases by ``update_config`` (``config/aliases.py``).

Each row names a field, the keys it stands for and how a value turns into the other side's value:

- ``build`` (config values -> field value) and ``read`` (field value -> ``{key: value}``) for a field
  that goes both ways;
- ``build=None`` with ``round_trip=True``: the field is built by ``training/arguments.py`` together
  with others (evaluation and checkpoint intervals depend on the held-out data and ``train.keep_best``)
  and read back here;
- ``round_trip=False``: the field is only read (the built arguments take the value from elsewhere:
  ``output_dir`` is the run's ``checkpoints/`` folder, evaluation batches are ``train.batch_size``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from tunesmith.errors import ConfigError


def _same(value: Any) -> Any:
    return value


def _plain(value: Any) -> Any:
    """An enum member (``SchedulerType.COSINE``) as its value (``"cosine"``)."""
    return getattr(value, "value", value)


@dataclass(frozen=True)
class MappedField:
    """One ``TrainingArguments`` field and the tunesmith keys it stands for.

    Attributes:
        field: the ``TrainingArguments`` field name.
        keys: the dotted config keys it is built from and read into (the first one is its alias target).
        build: the keys' values (in order) -> the field's value; None when built elsewhere or never.
        read: (the field's value, every field of the given arguments) -> ``{key: value}``.
        reads: other fields ``read`` consults (so they count as understood, not as refused).
        alias: the field's name is accepted by ``update_config`` as another name for ``keys[0]``.
        round_trip: building a config's arguments and reading them back gives the config's values.
    """

    field: str
    keys: tuple[str, ...]
    build: Optional[Callable[..., Any]]
    read: Callable[[Any, Mapping[str, Any]], dict[str, Any]]
    reads: tuple[str, ...] = ()
    alias: bool = False
    round_trip: bool = True


def same(field: str, key: str, to_field: Callable[[Any], Any] = _same, to_key: Callable[[Any], Any] = _plain,
         alias: bool = True) -> MappedField:
    """A field that holds one key's value (converted by ``to_field`` / ``to_key`` where they differ)."""
    return MappedField(field, (key,), to_field,
                       lambda value, given: {} if value is None else {key: to_key(value)}, alias=alias)


def flag(field: str, key: str, value: str) -> MappedField:
    """A boolean field that is true when ``key`` is ``value`` (``bf16`` <-> ``train.precision=bf16``)."""
    return MappedField(field, (key,), lambda current: current == value,
                       lambda on, given: {key: value} if on else {})


def read_only(field: str, key: str, alias: bool = True) -> MappedField:
    """A field read into ``key`` whose built value comes from elsewhere."""
    return MappedField(field, (key,), None, lambda value, given: {} if value is None else {key: value},
                       alias=alias, round_trip=False)


def _warmup(steps: int, ratio: float) -> float:
    # transformers 5 reads a float below 1 as a fraction of the total steps
    return steps if steps > 0 else ratio


def _read_warmup(value: float, given: Mapping[str, Any]) -> dict[str, Any]:
    if value and 0 < value < 1:
        return {"train.warmup_ratio": value, "train.warmup_steps": 0}
    return {"train.warmup_steps": int(value or 0), "train.warmup_ratio": 0.0}


def _strategy(field: str, value: Any, allowed: tuple[str, ...]) -> str:
    value = _plain(value)
    if value not in allowed:
        raise ConfigError(f"trainer_config: TrainingArguments.{field}={value!r} is not supported; "
                          f"use {' or '.join(repr(a) for a in allowed)} (tunesmith counts in steps)")
    return value


def _read_save(value: Any, given: Mapping[str, Any]) -> dict[str, Any]:
    every = _strategy("save_strategy", value, ("steps", "no")) == "steps"
    return {"train.save_steps": given["save_steps"] if every else 0}


def _read_eval(value: Any, given: Mapping[str, Any]) -> dict[str, Any]:
    every = _strategy("eval_strategy", value, ("steps", "no")) == "steps"
    return {"train.eval_steps": (given.get("eval_steps") or given["logging_steps"]) if every else 0}


def _read_logging(value: Any, given: Mapping[str, Any]) -> dict[str, Any]:
    _strategy("logging_strategy", value, ("steps",))
    return {}


def _read_compile(on: Any, given: Mapping[str, Any]) -> dict[str, Any]:
    if not on:
        return {}
    other = {f: given.get(f) for f in ("torch_compile_backend", "torch_compile_mode")}
    if other["torch_compile_backend"] in (None, "inductor") and other["torch_compile_mode"] is None:
        return {"train.compile": "on"}
    shown = ", ".join(f"{k}={v!r}" for k, v in other.items() if v is not None)
    raise ConfigError(f"trainer_config: TrainingArguments {shown} has no tunesmith equivalent: train.compile=on "
                      "compiles each decoder layer with inductor in its default mode; leave them unset")


TRAINING_ARGUMENTS: tuple[MappedField, ...] = (
    same("learning_rate", "train.lr"),
    same("num_train_epochs", "train.epochs"),
    same("max_steps", "train.max_steps"),
    same("per_device_train_batch_size", "train.batch_size"),
    same("gradient_accumulation_steps", "train.grad_accum"),
    same("lr_scheduler_type", "train.scheduler"),
    same("weight_decay", "train.weight_decay"),
    same("max_grad_norm", "train.max_grad_norm", alias=False),
    same("seed", "train.seed"),
    same("logging_steps", "train.logging_steps"),
    # 0 keeps every checkpoint; transformers says so with None
    MappedField("save_total_limit", ("train.save_limit",), lambda n: n or None,
                lambda n, given: {"train.save_limit": n or 0}, alias=True),
    same("save_only_model", "train.save_only_model"),
    same("bf16_full_eval", "train.bf16_full_eval"),
    MappedField("warmup_steps", ("train.warmup_steps", "train.warmup_ratio"), _warmup, _read_warmup, alias=True),
    flag("use_cpu", "model.device", "cpu"),
    flag("fp16", "train.precision", "fp16"),
    flag("bf16", "train.precision", "bf16"),  # after fp16: bf16 wins when both are set
    MappedField("save_strategy", ("train.save_steps",), None, _read_save, reads=("save_steps",)),
    MappedField("eval_strategy", ("train.eval_steps",), None, _read_eval, reads=("eval_steps",)),
    MappedField("logging_strategy", (), None, _read_logging),
    # transformers compiles the whole model; tunesmith compiles each decoder layer (train.compile=on)
    # and passes no torch_compile on. False, the field's default, leaves train.compile as it is.
    MappedField("torch_compile", ("train.compile",), None, _read_compile,
                reads=("torch_compile_backend", "torch_compile_mode"), alias=True, round_trip=False),
    read_only("output_dir", "output_dir"),
    read_only("per_device_eval_batch_size", "eval.batch_size", alias=False),
)

# Fields that change nothing tunesmith trains or writes (where logs go, names); read and dropped.
IGNORED = frozenset({"report_to", "run_name", "do_train", "do_eval", "do_predict"})


def training_argument_aliases() -> dict[str, str]:
    """``TrainingArguments`` field name -> the config key it is another name for.

    Example:
        >>> training_argument_aliases()["learning_rate"], training_argument_aliases()["save_total_limit"]
        ('train.lr', 'train.save_limit')
    """
    aliases = {row.field: row.keys[0] for row in TRAINING_ARGUMENTS if row.alias}
    aliases["save_steps"] = "train.save_steps"  # read together with save_strategy
    return aliases


def build_mapped(cfg: Any, resolved: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """The ``TrainingArguments`` keywords of every row built from the config ``cfg``; ``resolved``
    gives the values the run decided for keys the config may leave at ``auto`` (``model.device``,
    ``train.precision``).

    Example:
        >>> from tunesmith.config.schema import TrainConfig
        >>> build_mapped(TrainConfig(), {"model.device": "cpu", "train.precision": "fp32"})["save_total_limit"] is None
        True
    """
    resolved = resolved or {}

    def value(key: str) -> Any:
        if key in resolved:
            return resolved[key]
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)
        return node

    return {row.field: row.build(*(value(key) for key in row.keys))
            for row in TRAINING_ARGUMENTS if row.build is not None}


def read_mapped(given: Mapping[str, Any]) -> dict[str, Any]:
    """Config keys for the fields of ``given`` (``TrainingArguments.to_dict()``) the table maps.

    Example:
        >>> read_mapped({"learning_rate": 1e-4, "bf16": True, "save_total_limit": None})
        {'train.lr': 0.0001, 'train.save_limit': 0, 'train.precision': 'bf16'}
    """
    out: dict[str, Any] = {}
    for row in TRAINING_ARGUMENTS:
        if row.field in given:
            out.update(row.read(given[row.field], given))
    return out


def understood_fields() -> set[str]:
    """Every ``TrainingArguments`` field this table reads or deliberately drops."""
    return {*(row.field for row in TRAINING_ARGUMENTS), *(f for row in TRAINING_ARGUMENTS for f in row.reads),
            *IGNORED}
