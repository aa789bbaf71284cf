"""Config schema, composition (Hydra) and validation."""

from tunesmith.config.compose import load_config, read_saved_config, save_config
from tunesmith.config.schema import (
    DataConfig,
    EvalConfig,
    ModelConfig,
    PeftConfig,
    TrainConfig,
    TrainSection,
)

__all__ = [
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "PeftConfig",
    "TrainConfig",
    "TrainSection",
    "load_config",
    "read_saved_config",
    "save_config",
]
