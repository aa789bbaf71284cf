"""``tunesmith.main``: one call from Python that runs exactly what ``tunesmith train`` runs.

    ``import tunesmith; result = tunesmith.main(max_steps=20, lr=5e-4, **{"peft.r": 8})``
"""

from __future__ import annotations

import copy
from typing import Any, Optional

from tunesmith.config.schema import TrainConfig


def main(train_config: Optional[TrainConfig] = None, *, verbosity: Any = None, **overrides: Any) -> Any:
    """Build the config, apply ``overrides`` (aliases or dotted keys) and train; returns a ``TrainResult``.

    Args:
        train_config: the config to start from; the packaged defaults (``load_config()``) when None.
            It is copied, so the caller's object is not changed by ``overrides``.
        verbosity: what the run shows while it works: ``"info"`` (progress lines, the default the
            first time), ``"debug"`` (also the resolved plan and cache keys) or ``"quiet"`` (warnings
            and errors only); None keeps the level set earlier (``tunesmith.config.logs``).
        **overrides: anything ``TrainConfig.update_config`` takes, e.g. ``lr=1e-4`` or
            ``**{"eval.before_after": "off"}``.

    Example:
        ``main(model="./tiny", dataset="rows.jsonl", max_steps=3).run_dir`` -> ``PosixPath('runs/20250101-120000')``
    """
    from tunesmith.api import FineTuner
    from tunesmith.config import load_config

    from tunesmith.config.logs import set_verbosity

    set_verbosity(verbosity)  # a bad name fails here, before anything is loaded
    cfg = copy.deepcopy(train_config) if train_config is not None else load_config()
    if overrides:
        cfg.update_config(overrides)  # every key and value is checked before anything is loaded
    tuner = FineTuner.from_config(cfg)
    result = tuner.train()
    from tunesmith.cli.printing import print_summary

    print_summary(result, cfg.eval.show_samples)
    return result
