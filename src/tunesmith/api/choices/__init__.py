"""Every ``auto`` of a config, decided: the functions ``resolve_run`` (``api/resolved_run.py``) calls.

Each module decides one group of settings from facts the layers below expose:

| module | decides |
|---|---|
| ``runtime`` | ``model.device``, ``train.precision``, ``model.dtype``, ``train.distributed.backend`` |
| ``task`` | ``model.task``, ``train.trainer``, ``train.preference.reference`` (and GRPO's reference) |
| ``batching`` | ``data.packing``, ``data.collator`` |
| ``training`` | ``train.attention``, ``train.frozen_weights``, ``train.lora_kernel``, ``train.memory_trim``, ``train.resume``, ``train.eval_strategy`` / ``save_strategy`` |
| ``data`` | ``data.template``, ``data.format`` (when known before reading) |
| ``evaluation`` | ``eval.metric`` |

The layers below receive only the chosen values; ``api/data_entry.py`` and ``api/exports.py``
(``tunesmith merge --dtype auto``) use the same decisions for functions users call directly.
"""
