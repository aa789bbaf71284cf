"""How long a run lasts: ``train.epochs`` or ``train.max_steps``, and which one a user meant.

A run has one length. ``train.max_steps > 0`` decides it (as in transformers); otherwise
``train.epochs`` does. The packaged jobs give a step limit (``train=default``: 150 steps), so a user
who asks for epochs anywhere (a YAML file, ``train.epochs=3``, ``trainer_config``,
``train(num_train_epochs=3)``) would otherwise still get the packaged 150 steps. The rules:

- A length the user gives replaces the length set before it: epochs alone clear the step limit
  (``train.max_steps=-1``); a step limit alone makes earlier epochs irrelevant.
- When the length set before was also the user's (not a packaged default), a warning says which
  one is used. Both given at once: ``max_steps`` is used, with a warning.

Each config remembers where its length came from (``length_origin``), so that the messages can
tell a packaged default from a user's setting.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

logger = logging.getLogger(__name__)

EPOCHS, MAX_STEPS = "train.epochs", "train.max_steps"
PACKAGED = "packaged"  # the origin of a length that comes from a packaged config group
_ORIGIN = "_length_origin"  # attribute on a TrainConfig; not a config key, never saved


def length_origin(cfg: Any) -> Optional[str]:
    """Where ``cfg``'s current length came from: ``"packaged"``, a user source, or None (unknown).

    Example:
        >>> from tunesmith.config import TrainConfig
        >>> length_origin(TrainConfig()) is None
        True
    """
    return cfg.__dict__.get(_ORIGIN)


def set_length_origin(cfg: Any, origin: Optional[str]) -> None:
    """Record where ``cfg``'s length came from (see ``length_origin``)."""
    cfg.__dict__[_ORIGIN] = origin


def describe_length(epochs: float, max_steps: int) -> str:
    """The length a run will have, in words.

    Example:
        >>> describe_length(3.0, -1), describe_length(1.0, 80)
        ('3 epochs (train.epochs)', '80 optimizer steps (train.max_steps)')
    """
    if max_steps > 0:
        return f"{max_steps} optimizer steps (train.max_steps)"
    return f"{epochs:g} epoch{'' if epochs == 1 else 's'} (train.epochs)"


def settle_length(epochs: float, max_steps: int, origin: Optional[str], given: dict[str, Any],
                  source: str, notes: Optional[list[tuple[int, str]]] = None) -> dict[str, Any]:
    """The length keys to set for a user's update ``given`` (dotted keys to converted values).

    ``epochs`` / ``max_steps`` / ``origin`` describe the config before the update; ``source`` names
    where ``given`` comes from, for the messages. Returns ``{}`` when ``given`` sets no length, else
    the length keys with ``train.max_steps=-1`` added when only epochs were given. The messages go
    to ``notes`` as ``(level, text)`` when it is given (the caller logs them once the whole config
    is known to be valid, so a refused config prints its error alone), else to the log at once.

    Example:
        >>> settle_length(1.0, 80, "packaged", {"train.epochs": 3.0}, "trainer_config", notes=[])
        {'train.epochs': 3.0, 'train.max_steps': -1}
    """
    new_epochs, new_steps = given.get(EPOCHS), given.get(MAX_STEPS)
    if new_epochs is None and new_steps is None:
        return {}
    earlier = _earlier_user_length(epochs, max_steps, origin)
    if new_epochs is not None and new_steps is not None:
        if new_steps > 0:
            _say(notes, logging.WARNING, "%s gives both train.max_steps=%s and train.epochs=%g; train.max_steps is "
                 "used (the run stops after %s optimizer steps), as in transformers. Give one of them.",
                 source, new_steps, new_epochs, new_steps)
        return {EPOCHS: new_epochs, MAX_STEPS: new_steps}
    if new_epochs is not None:
        if earlier and max_steps > 0:
            _say(notes, logging.WARNING, "train.epochs=%g from %s replaces train.max_steps=%s given earlier (%s); "
                 "the run lasts %s.", new_epochs, source, max_steps, origin or "in the config",
                 describe_length(new_epochs, -1))
        elif max_steps > 0:
            _say(notes, logging.INFO, "train.epochs=%g from %s replaces the packaged step limit "
                 "train.max_steps=%s.", new_epochs, source, max_steps)
        return {EPOCHS: new_epochs, MAX_STEPS: -1}
    if earlier and new_steps > 0 and max_steps <= 0:
        _say(notes, logging.WARNING, "train.max_steps=%s from %s decides the length; train.epochs=%g given "
             "earlier (%s) no longer applies.", new_steps, source, epochs, origin or "in the config")
    return {MAX_STEPS: new_steps}


def _say(notes: Optional[list[tuple[int, str]]], level: int, text: str, *args: Any) -> None:
    """Log ``text % args`` at ``level``, or keep it in ``notes`` for the caller to log later."""
    if notes is None:
        logger.log(level, text, *args)
    else:
        notes.append((level, text % args))


def say_notes(notes: list[tuple[int, str]]) -> None:
    """Log the messages ``settle_length`` kept in ``notes``."""
    for level, text in notes:
        logger.log(level, text)


def _earlier_user_length(epochs: float, max_steps: int, origin: Optional[str]) -> bool:
    """Whether the length before an update was the user's own (so replacing it deserves a warning)."""
    if origin == PACKAGED:
        return False
    if origin is not None:
        return True
    # Unknown origin (a TrainConfig built in Python, a saved run's config): a value other than
    # TrainSection's default (the packaged job's) was set by someone.
    from tunesmith.config.schema import TrainSection

    default = TrainSection()
    return max_steps != default.max_steps or epochs != default.epochs
