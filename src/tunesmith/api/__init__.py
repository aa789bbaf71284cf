"""The Python API: ``FineTuner``, the one composition root that the CLI and ``tunesmith.main`` use too.

    ``tuner = FineTuner("smollm2-135m-instruct", dataset_name="arith", lora_r=8); tuner.train().after["accuracy"], tuner("What is 12 + 7?")``

``finetuner`` holds the object, ``train_job`` the steps of one training run, ``held_out`` the
before/after and ``evaluate`` measurements, ``results`` what a run returns.
"""

from tunesmith.api.finetuner import FineTuner
from tunesmith.api.results import TrainResult

__all__ = ["FineTuner", "TrainResult"]
