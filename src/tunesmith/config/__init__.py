"""Config schema, composition (Hydra) and validation."""

from tunesmith.config.aliases import ALIASES
from tunesmith.config.compose import load_config, read_saved_config, save_config
from tunesmith.config.schema import (
    DataConfig,
    EvalConfig,
    ModelConfig,
    PeftConfig,
    TrainConfig,
    TrainSection,
)
from tunesmith.config.update import update_config

__all__ = [
    "ALIASES",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "PeftConfig",
    "TrainConfig",
    "TrainSection",
    "load_config",
    "read_saved_config",
    "save_config",
    "update_config",
]
