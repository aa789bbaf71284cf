"""tunesmith: fine-tune pretrained transformer models (LoRA or full) from Python or the CLI.

    ``import tunesmith; tuner = tunesmith.FineTuner("smollm2-135m-instruct", dataset_name="arith"); result = tuner.train()``

Everything here is imported lazily, so ``import tunesmith`` (and ``tunesmith --help``) does not
import torch.
"""

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "FineTuner": "tunesmith.api",
    "TrainResult": "tunesmith.api",
    "TrainConfig": "tunesmith.config.schema",
    "DefaultTrainerConfig": "tunesmith.config.keywords",
    # the data pipeline step by step (docs/coming-from-the-design-documents.md)
    "DATASET_REGISTRY": "tunesmith.data.builtin",
    "TRAINER_REGISTRY": "tunesmith.training.trainers",
    "QADataset": "tunesmith.data.handlers",
    "generate_dataset_config": "tunesmith.api.data_steps",
    "get_custom_data_collator": "tunesmith.api.data_steps",
    "device_aware_data_loading": "tunesmith.api.data_steps",
    "load_config": "tunesmith.config",
    "main": "tunesmith.entry",
    "Preprocessor": "tunesmith.data.preprocessor",
    "ChatTemplatePreprocessor": "tunesmith.data.preprocessor",
    "DefaultPreprocessor": "tunesmith.data.preprocessor",
    "DefaultInferenceHandler": "tunesmith.inference.handler",
    "InferenceHandler": "tunesmith.inference.handler",
    "ChatInferenceHandler": "tunesmith.inference.handler",
    # one decorator per component kind (docs/extending.md)
    "register_model_loader": "tunesmith.models.loading",
    "register_dataset": "tunesmith.data.builtin",
    "register_format": "tunesmith.data.formats",
    "register_row_transform": "tunesmith.data.transforms",
    "register_preprocessor": "tunesmith.data.preprocessor",
    "register_collator": "tunesmith.data.collators",
    "register_trainer": "tunesmith.training.trainers",
    "register_callback": "tunesmith.training.callbacks",
    "register_metric": "tunesmith.evaluation.metrics",
    "register_inference_handler": "tunesmith.inference.handler",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tunesmith' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__


def _attach_console() -> None:
    # tunesmith's lines reach the console through one handler on the "tunesmith" logger (never the
    # root logger); the front doors set its level (tunesmith.config.logs).
    from tunesmith.config.logs import install_console

    install_console()


_attach_console()
