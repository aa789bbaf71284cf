"""tunesmith: fine-tune pretrained transformer models (LoRA or full) from Python or the CLI."""

__version__ = "0.1.0"
__all__ = ["ChatInferenceHandler", "ChatTemplatePreprocessor", "FineTuner", "InferenceHandler", "Preprocessor",
           "TrainConfig", "TrainResult", "load_config", "main", "__version__"]


def __getattr__(name: str):
    # Lazy so that `import tunesmith` (and `tunesmith --help`) does not import torch.
    if name == "FineTuner":
        from tunesmith.api import FineTuner

        return FineTuner
    if name == "TrainResult":
        from tunesmith.api import TrainResult

        return TrainResult
    if name in ("Preprocessor", "ChatTemplatePreprocessor"):
        from tunesmith.data import preprocessor

        return getattr(preprocessor, name)
    if name in ("InferenceHandler", "ChatInferenceHandler"):
        from tunesmith.inference import handler

        return getattr(handler, name)
    if name == "TrainConfig":
        from tunesmith.config.schema import TrainConfig

        return TrainConfig
    if name == "load_config":
        from tunesmith.config import load_config

        return load_config
    if name == "main":
        from tunesmith.entry import main

        return main
    raise AttributeError(f"module 'tunesmith' has no attribute {name!r}")
