"""The model's task, the trainer and what the trainer needs: ``model.task``, ``train.trainer`` and
``train.preference.reference`` with ``auto`` replaced.

The facts come from below: the architecture in the model's config (``models.loading.task_from_config``)
and the traits each trainer is registered with (``training.trainers.trainer_traits``).
"""

from __future__ import annotations

from typing import Any, Optional

from tunesmith.config.vocabulary import Task, is_auto
from tunesmith.errors import ConfigError


def infer_task(model_config: Any, requested: str = "auto") -> str:
    """``model.task`` when given, else the task the architecture in the model's config is built for.

    Example: ``infer_task(BertConfig(architectures=["BertForSequenceClassification"]))`` ->
    ``"sequence_classification"``.
    """
    from tunesmith.models.loading import task_from_config

    return Task(requested).value if not is_auto(requested) else task_from_config(model_config).value


def requested_task(trainer: str, task: str) -> str:
    """``model.task`` as a run reads it: ``auto`` with a trainer of one task only (``reward``: a
    sequence classifier) is that task; otherwise the model's config decides.

    Example: ``requested_task("reward", "auto")`` -> ``"sequence_classification"``.
    """
    from tunesmith.training.trainers import TRAINERS, trainer_traits

    if not is_auto(task) or is_auto(trainer) or trainer not in TRAINERS.names():
        return task
    tasks = trainer_traits(trainer).tasks
    return tasks[0] if tasks and len(tasks) == 1 and tasks[0] != Task.CAUSAL_LM else task


def resolve_trainer(name: str, task: str) -> str:
    """The trainer name a run uses: ``auto`` becomes the task's default trainer (registered with
    ``default_for``); a trainer of another task is a ConfigError.

    Example: ``resolve_trainer("auto", "seq2seq")`` -> ``"seq2seq"``.
    """
    from tunesmith.training.trainers import check_trainer_task, trainers_by_task

    if is_auto(name):
        defaults = trainers_by_task()
        if task not in defaults:
            raise ConfigError(f"train.trainer: no trainer is registered as the default for {task!r} models; "
                              f"set train.trainer (defaults exist for {', '.join(defaults)})")
        return defaults[task]
    return check_trainer_task(name, task)


def reference_needed(trainer: str, settings: Any, grpo: Any = None) -> bool:
    """Whether ``trainer`` compares with a reference model: one registered with ``reference=True``,
    unless its loss needs none (``train.preference.loss=simpo``; ``train.grpo.kl_weight=0``)."""
    from tunesmith.training.preference import REFERENCE_FREE_LOSSES
    from tunesmith.training.trainers import TRAINERS, trainer_traits

    if is_auto(trainer) or trainer not in TRAINERS.names():
        return False
    traits = trainer_traits(trainer)
    if not traits.reference:
        return False
    if traits.settings == "grpo":
        return grpo is not None and grpo.kl_weight > 0
    return settings.loss not in REFERENCE_FREE_LOSSES


def check_trainer_settings(trainer: str, settings: Any, grpo: Any = None) -> None:
    """``train.preference.*`` (or ``train.grpo.*``) keys set for a trainer that does not read them are
    an error, not ignored; so is a ``train.preference.reference`` for a trainer or loss without one."""
    from tunesmith.config.schema import GrpoConfig, PreferenceConfig
    from tunesmith.training.preference import changed_keys
    from tunesmith.training.trainers import TRAINERS, trainer_traits

    section = trainer_traits(trainer).settings
    readers = {s: [n for n in TRAINERS.names() if trainer_traits(n).settings == s] for s in ("preference", "grpo")}
    changed = changed_keys(settings, PreferenceConfig())
    if changed and section != "preference":
        raise ConfigError(f"train.preference.{changed[0]}: configures the preference trainers "
                          f"({', '.join(readers['preference'])}), but train.trainer={trainer}")
    changed = changed_keys(grpo, GrpoConfig()) if grpo is not None else []
    if changed and section != "grpo":
        raise ConfigError(f"train.grpo.{changed[0]}: configures train.trainer={' / '.join(readers['grpo'])}, "
                          f"but train.trainer={trainer}")
    if not is_auto(settings.reference) and section == "preference" and not reference_needed(trainer, settings):
        why = (f"the {settings.loss} loss" if trainer_traits(trainer).reference else f"train.trainer={trainer}")
        raise ConfigError(f"train.preference.reference: {settings.reference!r} is set, but {why} uses no reference "
                          "model; leave it at auto")


def resolve_reference(choice: str, method: str, continues_adapter: bool,
                      key: str = "train.preference.reference") -> str:
    """The reference a run uses: ``adapter_off``, ``copy`` or ``precomputed``. ``auto``:
    ``adapter_off`` for a new adapter, ``copy`` when the run continues one (``model.adapter``:
    switching it off would compare with the bare base); full fine-tuning must choose.

    Example: ``resolve_reference("auto", "lora", continues_adapter=False)`` -> ``"adapter_off"``.
    """
    from tunesmith.training.reference import check_reference

    if not is_auto(choice):
        return check_reference(choice, method, key)
    if method == "full":
        raise ConfigError(f"{key}: full fine-tuning has no adapter to switch off, so choose the reference: "
                          f"{key}=copy (a frozen copy of the starting weights: twice the trainable memory) or "
                          f"{key}=precomputed (reference log-probabilities computed once before training)")
    return "copy" if continues_adapter else "adapter_off"


def run_reference(trainer: str, cfg: Any) -> Optional[str]:
    """The reference model of the run ``cfg`` describes with ``trainer`` (resolved), or None: a
    preference trainer's ``train.preference.reference``; a GRPO run's KL penalty compares with the
    starting model (``copy`` under full fine-tuning or a continued adapter, else ``adapter_off``)."""
    from tunesmith.training.trainers import trainer_traits

    if not reference_needed(trainer, cfg.train.preference, cfg.train.grpo):
        return None
    continues = bool(cfg.model.adapter)
    if trainer_traits(trainer).settings == "grpo":
        return "copy" if cfg.peft.method == "full" or continues else "adapter_off"
    return resolve_reference(cfg.train.preference.reference, cfg.peft.method, continues)


def build_trainer(name: str, trainer_args: dict[str, Any], task: str, **inputs: Any) -> Any:
    """``tunesmith.training.trainers.build_trainer`` for a ``train.trainer`` that may be ``auto``
    (resolved for ``task`` with ``resolve_trainer``)."""
    from tunesmith.training.trainers import build_trainer as build

    return build(resolve_trainer(name, task), trainer_args, task, **inputs)


def scores_answers(trainer: str) -> bool:
    """Whether ``trainer`` trains a reward model: a sequence classifier of one output trained on
    preference pairs (its registered ``tasks`` and ``rows``), which scores answers instead of writing them."""
    from tunesmith.training.trainers import TRAINERS, trainer_traits

    if is_auto(trainer) or trainer not in TRAINERS.names():
        return False
    traits = trainer_traits(trainer)
    return traits.rows == "preference" and traits.tasks == (Task.SEQUENCE_CLASSIFICATION.value,)


ROW_KINDS = {"preference": "chosen / rejected pairs", "unpaired_preference": "answers marked desirable or not",
             "prompt": "prompts without answers"}


def check_rows_fit_trainer(rows: str, trainer: str, info: Any) -> None:
    """A ``ConfigError`` when the data's examples (``info``: the data's summary, or None) are not the
    ``rows`` that ``trainer`` reads (pairs for ``dpo``, ...)."""
    from tunesmith.training.trainers import TRAINERS, trainer_traits

    kind = info.kind if info else None
    if kind is None:
        return
    have = kind if kind in ROW_KINDS else "examples"
    if have == rows:
        return
    readers = [n for n in TRAINERS.names() if trainer_traits(n).rows == have]
    holds = ROW_KINDS.get(have, f"{kind} examples")
    wants = ROW_KINDS.get(rows, "examples with answers to learn (conversations, text, ...)")
    raise ConfigError(f"train.trainer: {trainer} trains on {wants}, but the data holds {holds} "
                      f"({info.describe()}); train it with train.trainer={' / '.join(readers) or '?'}, "
                      "or give data of the kind this trainer reads")
