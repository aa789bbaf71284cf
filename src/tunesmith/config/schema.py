"""The typed config schema. Every key a user can set lives here, with its default.

Fixed choices are ``Literal`` types; names resolved through a registry (data formats, trainers,
built-in datasets) are plain strings checked against that registry before anything is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

Task = Literal["auto", "causal_lm", "seq2seq", "sequence_classification"]
WeightDtype = Literal["auto", "float32", "bfloat16", "float16"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
LossOn = Literal["all", "assistant", "last_assistant"]
PeftMethod = Literal["lora", "dora", "full"]
Scheduler = Literal["linear", "cosine", "constant", "constant_with_warmup"]
BeforeAfter = Literal["auto", "on", "off"]


@dataclass
class ModelConfig:
    """Which model to fine-tune and where it runs."""

    # A packaged alias (smollm2-135m-instruct, minilm-l6), a hub id, a local folder or a .gguf file.
    name_or_path: str = "smollm2-135m-instruct"
    task: Task = "auto"
    dtype: WeightDtype = "auto"  # dtype of the loaded weights; auto picks by device
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    trust_remote_code: bool = False
    revision: Optional[str] = None


@dataclass
class DataConfig:
    """Where the examples come from and how they become token ids."""

    train: str = "arith"  # a built-in dataset name, a hub dataset name or a local path
    eval: Optional[str] = None  # same kinds as train; built-in datasets use their test split
    eval_split: float = 0.0  # fraction of train held out for evaluation when eval is not given
    format: str = "auto"  # auto | alpaca | messages (see `tunesmith.data.formats.FORMATS`)
    max_length: int = 512  # tokens per example; longer examples are dropped and counted
    loss_on: LossOn = "assistant"
    max_samples: Optional[int] = None  # cap on training examples (seeded shuffle first)
    system_prompt: Optional[str] = None  # added to every conversation that has none


@dataclass
class PeftConfig:
    """The fine-tuning method and its adapter settings."""

    method: PeftMethod = "lora"
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0  # LoRA dropout; 0 skips a copy of every adapted activation
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])


@dataclass
class TrainSection:
    """Optimisation settings. One optimizer step sees batch_size × grad_accum sequences."""

    trainer: str = "sft"
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 2e-4
    scheduler: Scheduler = "cosine"
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    seed: int = 42
    precision: Precision = "auto"
    logging_steps: int = 10
    save_steps: int = 0  # 0: save only at the end
    eval_steps: int = 0  # 0: no evaluation loss during training
    num_threads: int = 0  # CPU threads; 0 lets torch decide


@dataclass
class EvalConfig:
    """Held-out evaluation before and after training."""

    before_after: BeforeAfter = "auto"  # auto: on for built-in datasets
    max_samples: int = 100
    max_new_tokens: int = 96
    batch_size: int = 32
    show_samples: int = 1  # sample answers printed side by side


@dataclass
class TrainConfig:
    """The whole config of a run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    peft: PeftConfig = field(default_factory=PeftConfig)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output_dir: Optional[str] = None  # default: runs/<timestamp>
    overwrite: bool = False  # allow writing into a non-empty output_dir
