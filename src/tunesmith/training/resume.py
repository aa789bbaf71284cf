"""Resuming a run: which checkpoint (``train.resume``), whether the config still matches, and the
run-directory guard.

``train.resume``:

* ``auto`` (default): continue from the newest complete checkpoint in ``output_dir/checkpoints``;
  start from step 0 when there is none;
* ``none``: always start from step 0;
* a path: a checkpoint folder (``runs/x/checkpoints/checkpoint-40``) or a run directory (its
  newest complete checkpoint). Without ``output_dir`` the run continues in that run directory.

A run directory is written into only when it is empty, holds an unfinished run of the same
config (then it is resumed), or ``overwrite`` is set. A resume whose config changes what the data
or the model is (``fingerprint``: data, model, adapter, seed, batch size, accumulation) is refused
with the list of differences unless ``force_resume`` (``--force``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from transformers import TrainerCallback

from tunesmith.config.run_dir import RunDir
from tunesmith.config.secrets import mask_config
from tunesmith.errors import ConfigError, RunDirError
from tunesmith.training.checkpoint_integrity import damage, newest_sound_checkpoint
from tunesmith.training.checkpoints import Checkpoint, newest_checkpoint, read_marker, step_of

logger = logging.getLogger(__name__)

# Keys that decide which examples, in which order, train which weights. Changing any of them makes a
# checkpoint meaningless for the new config (or silently changes what "step N" means).
FINGERPRINT_KEYS = ("model.name_or_path", "model.task", "model.revision", "model.loader", "model.loader_args",
                    "model.adapter", "data", "peft", "train.seed", "train.batch_size", "train.grad_accum", "train.trainer",
                    "train.trainer_args")
IGNORED_DATA_KEYS = ("cache",)  # the tokenized-data cache changes nothing about the examples


def fingerprint(cfg: Any) -> dict[str, Any]:
    """The resume-relevant part of a config as ``{dotted key: value}`` (secrets masked).

    Example:
        >>> from tunesmith.config import TrainConfig
        >>> fingerprint(TrainConfig())["train.batch_size"]
        8
    """
    tree = mask_config(dataclasses.asdict(cfg))
    out: dict[str, Any] = {}
    for key in FINGERPRINT_KEYS:
        node: Any = tree
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and key in ("data", "peft"):
            out.update(_flatten(node, f"{key}.", skip=IGNORED_DATA_KEYS if key == "data" else ()))
        else:
            out[key] = node
    return json.loads(json.dumps(out, default=str))  # plain JSON values, as stored in a marker


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``["train.seed: 42 -> 7", "data.train: 'a.jsonl' -> 'b.jsonl'"]``; [] when they match."""
    out = []
    for key in sorted(set(saved) | set(current)):
        if saved.get(key) != current.get(key):
            out.append(f"{key}: {saved.get(key, '(unset)')!r} -> {current.get(key, '(unset)')!r}")
    return out


@dataclass
class ResumePlan:
    """Where the run writes and which checkpoint (if any) it continues from."""

    run_dir: Optional[Path]  # None: a new timestamped folder
    checkpoint: Optional[Checkpoint] = None
    continuing: bool = False  # the run directory already holds this run (resumed or restarted in place)


NEWEST = "newest"  # train.resume=auto: continue from the newest sound checkpoint


def plan_resume(cfg: Any, resume: str) -> ResumePlan:
    """Decide the run directory and checkpoint for ``cfg``; raise when the guard refuses.

    ``resume``: ``train.resume`` as the run reads it: ``NEWEST`` (the newest sound checkpoint of an
    unfinished run in ``output_dir``), ``none`` or a checkpoint path.

    Raises:
        ConfigError: ``train.resume`` names nothing usable, or the config differs from the
            checkpoint's and ``force_resume`` is off (the message lists each difference).
        RunDirError: ``output_dir`` is not empty and is not an unfinished run of this config.
    """
    from tunesmith.config.run_folders import check_output_dir

    resume = resume.strip()
    checkpoint: Optional[Checkpoint] = None
    run_dir = check_output_dir(cfg.output_dir) if cfg.output_dir else None
    if resume not in (NEWEST, "none"):
        checkpoint, source_run = _explicit_checkpoint(Path(resume).expanduser())
        run_dir = run_dir or source_run
        if run_dir is None:
            raise ConfigError(f"train.resume: {resume!r} is not inside a run directory; set output_dir too")
    if run_dir is None:
        return ResumePlan(None)
    current = fingerprint(cfg)
    if not run_dir.exists() or not any(run_dir.iterdir()):
        if checkpoint is not None:
            _check_same(checkpoint.record.get("fingerprint", {}), current, cfg, str(checkpoint.path))
        return ResumePlan(run_dir, checkpoint)
    if cfg.overwrite and checkpoint is None:
        return ResumePlan(run_dir)  # replaced: RunDir.create clears the old records
    if RunDir(run_dir).is_finished() and checkpoint is None:
        raise RunDirError(f"output_dir: {str(run_dir)!r} is not empty: it holds a finished run ({RunDir.RECORD}); choose another "
                          "output_dir, or pass --overwrite (overwrite=true) to replace it")
    if checkpoint is None and resume == NEWEST:
        # A damaged newer checkpoint is reported and moved aside; the newest sound one is resumed.
        checkpoint = newest_sound_checkpoint(RunDir(run_dir).checkpoints, report=_warn)
    if checkpoint is not None:
        _check_same(checkpoint.record.get("fingerprint", {}), current, cfg, str(checkpoint.path))
        return ResumePlan(run_dir, checkpoint, continuing=True)
    saved = _saved_fingerprint(run_dir)
    if saved is None or resume == "none" and newest_checkpoint(RunDir(run_dir).checkpoints) is not None:
        what = ("is not empty: it holds checkpoints and train.resume=none" if saved is not None
                else "is not empty and holds no unfinished run of this config (no readable config.yaml)")
        raise RunDirError(f"output_dir: {str(run_dir)!r} {what}; choose another output_dir, resume with "
                          "train.resume=auto, or pass --overwrite (overwrite=true) to replace what is there")
    # An unfinished run of this config that saved no checkpoint yet: it starts again from step 0.
    _check_same(saved, current, cfg, str(RunDir(run_dir).config_file))
    return ResumePlan(run_dir, None, continuing=True)


def _explicit_checkpoint(path: Path) -> tuple[Checkpoint, Optional[Path]]:
    """``train.resume=PATH``: a checkpoint folder, or a run directory's newest complete checkpoint."""
    if not path.exists():
        raise ConfigError(f"train.resume: {str(path)!r} does not exist; give a checkpoint folder "
                          "(.../checkpoints/checkpoint-N), a run directory, auto or none")
    if step_of(path) is not None:
        reason = damage(path)
        if reason:
            newest = newest_checkpoint(path.parent)
            hint = f" The newest complete one there is {newest.path}." if newest else ""
            raise RunDirError(f"train.resume: {str(path)!r} is not a complete checkpoint ({reason}).{hint}")
        run = path.parent.parent if path.parent.name == RunDir.CHECKPOINTS else None
        return Checkpoint(path, step_of(path) or 0, read_marker(path) or {}), run
    newest = newest_sound_checkpoint(RunDir(path).checkpoints, move_aside=False, report=_warn)
    if newest is None:
        raise RunDirError(f"train.resume: {str(path)!r} holds no complete checkpoint (nothing under "
                          f"{RunDir(path).checkpoints} has a {'tunesmith_checkpoint.json'} that matches its files)")
    return newest, path


def _warn(message: str) -> None:
    """A warning the user sees before training starts (stderr)."""
    logger.warning(message)


def _saved_fingerprint(run_dir: Path) -> Optional[dict[str, Any]]:
    run = RunDir(run_dir)
    if not run.has_config():
        return None
    try:
        return fingerprint(run.read_config())
    except Exception:  # noqa: BLE001 - a config.yaml this version cannot read is "not the same config"
        return None


def _check_same(saved: dict[str, Any], current: dict[str, Any], cfg: Any, where: str) -> None:
    changed = differences(saved, current) if saved else []
    if not changed:
        return
    listed = "; ".join(changed)
    if cfg.force_resume:
        logger.warning(f"resuming from {where} although the config changed: {listed}")
        return
    raise ConfigError(f"train.resume: the config changed what the data or model is since {where} was saved: "
                      f"{listed}. Resuming would mix two different runs. Use the old values, choose another "
                      "output_dir (or train.resume=none with --overwrite), or pass --force (force_resume=true) "
                      "to resume anyway")


def _flatten(tree: dict[str, Any], prefix: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if key in skip:
            continue
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value) and key != "columns":
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def apply_plan(plan: ResumePlan, run_dir: Path | RunDir) -> None:
    """Make the run directory match the plan: records after the checkpoint's step are dropped; a run
    that starts from step 0 loses what an earlier attempt left (incomplete or replaced checkpoints)."""
    run = RunDir(run_dir)
    if plan.checkpoint is not None:
        truncate_metrics(run.metrics_file, plan.checkpoint.step)
        return
    run.restart_from_zero()


def truncate_metrics(path: Path, step: int) -> int:
    """Drop the ``metrics.jsonl`` records logged after ``step`` (they will be logged again); returns
    how many were dropped. A torn last line (the process was killed while writing it) goes too."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            dropped += 1
            continue
        if isinstance(record, dict) and int(record.get("step", 0)) <= step:
            kept.append(line)
        else:
            dropped += 1
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    tmp.replace(path)
    return dropped


class RestoreLossBookkeeping(TrainerCallback):
    """On resume, puts back what the Trainer accumulates between logs (the loss since the last log,
    the running total behind ``train_loss``), so the logged losses match an unbroken run."""

    def __init__(self, trainer: Any, state: dict[str, Any]) -> None:
        self.trainer = trainer
        self.state = state

    def on_train_begin(self, args, state, control, **kwargs):
        if self.state:
            self.trainer.restore_loss_bookkeeping(self.state, state.global_step, args.device)


class SeedLengthGroupedSampler(TrainerCallback):
    """``data.packing=group_by_length``: seed transformers' length-grouped sampler per epoch
    (``train.seed`` + epoch), as the plain random sampler is, so a run resumed in a later epoch
    sees the same batches as an unbroken one (unseeded, it would draw from the global RNG)."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        import torch
        from transformers.trainer_pt_utils import LengthGroupedSampler

        loader = getattr(self.trainer.callback_handler, "train_dataloader", None)
        batch_sampler = getattr(loader, "batch_sampler", None)
        for candidate in (getattr(loader, "sampler", None), getattr(batch_sampler, "sampler", None),
                          getattr(getattr(batch_sampler, "batch_sampler", None), "sampler", None)):
            if isinstance(candidate, LengthGroupedSampler):
                seed = args.data_seed if args.data_seed is not None else args.seed
                candidate.generator = torch.Generator().manual_seed(int(seed) + int(state.epoch or 0))
