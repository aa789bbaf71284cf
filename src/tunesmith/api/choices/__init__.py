"""Every ``auto`` of a config, decided: the functions ``resolve_run`` (``api/resolved_run.py``) calls.

Each module decides one group of settings from facts the layers below expose:

| module | decides |
|---|---|
| ``runtime`` | ``model.device``, ``train.precision``, ``model.dtype``, ``train.distributed.backend`` |
| ``task`` | ``model.task``, ``train.trainer``, ``train.preference.reference`` (and GRPO's reference) |
| ``batching`` | ``data.packing``, ``data.collator`` |
| ``training`` | ``train.attention``, ``train.frozen_weights``, ``train.memory_trim``, ``train.resume``, ``train.save_strategy`` / ``eval_strategy`` |
| ``data`` | ``data.template``, ``data.format`` (when known before reading), ``eval.metric``, ``export dtype`` |

The layers below receive only the chosen values.
"""
