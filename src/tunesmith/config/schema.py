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
PeftMethod = Literal["lora", "dora", "qlora", "int8", "full"]
Trainable = Literal["all", "head", "last_layers"]
LoraBias = Literal["none", "all", "lora_only"]
QuantType = Literal["nf4", "fp4"]
ComputeDtype = Literal["bfloat16", "float16", "float32"]
Scheduler = Literal["linear", "cosine", "constant", "constant_with_warmup"]
BeforeAfter = Literal["auto", "on", "off"]
Truncation = Literal["drop", "truncate_prompt", "truncate_end"]
Packing = Literal["none", "group_by_length", "pack"]
BadRows = Literal["error", "skip"]


@dataclass
class ModelConfig:
    """Which model to fine-tune and where it runs."""

    # A packaged alias (smollm2-135m-instruct, minilm-l6), a hub id, a local folder or a .gguf file.
    name_or_path: str = "smollm2-135m-instruct"
    task: Task = "auto"
    dtype: WeightDtype = "auto"  # dtype of the loaded weights; auto picks by device
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    trust_remote_code: bool = False
    allow_pickle: bool = False  # read .bin/.pt pickle weights (they can run code); safetensors otherwise
    revision: Optional[str] = None


@dataclass
class PromptTags:
    """Literal prompt markers for a model without a chat template (used when data.template=tags).

    A conversation renders as ``system_start + text + system_end``, ``user_start + text + user_end``,
    ``assistant_start + text + assistant_end`` per turn; the answer and ``assistant_end`` (or EOS)
    are trained.
    """

    system_start: str = ""
    system_end: str = "\n\n"
    user_start: str = "### User:\n"
    user_end: str = "\n\n"
    assistant_start: str = "### Assistant:\n"
    assistant_end: str = ""  # empty: the tokenizer's EOS token ends each answer


@dataclass
class MixSource:
    """One dataset of a weighted mixture (``data.mix``)."""

    train: str
    weight: float = 1.0
    format: str = "auto"
    columns: dict[str, str] = field(default_factory=dict)
    subset: Optional[str] = None
    split: str = "train"


@dataclass
class DataConfig:
    """Where the examples come from and how they become token ids."""

    train: str = "arith"  # a built-in/registered dataset name, a hub dataset name or a local path/glob/folder
    eval: Optional[str] = None  # same kinds as train; built-in datasets use their test split
    eval_split: float = 0.0  # fraction of train held out for evaluation when eval is not given
    subset: Optional[str] = None  # hub dataset config name (datasets.load_dataset's second argument)
    split: str = "train"  # split of data.train to train on
    eval_split_name: Optional[str] = None  # split of data.train used as the eval set (e.g. test)
    format: str = "auto"  # see `tunesmith.data.formats.FORMATS`; auto detects from the columns
    columns: dict[str, str] = field(default_factory=dict)  # canonical name -> column in the file
    template: str = "auto"  # auto (tokenizer's own) | chatml | llama3 | alpaca | plain | tags
    tags: PromptTags = field(default_factory=PromptTags)
    max_length: int = 512  # tokens per example
    truncation: Truncation = "drop"  # what happens to longer examples; each one is counted
    min_length: int = 0  # drop examples shorter than this many tokens
    loss_on: LossOn = "assistant"
    max_samples: Optional[int] = None  # cap on training examples (seeded shuffle first)
    dedupe: bool = False  # drop exact duplicate examples
    mix: list[MixSource] = field(default_factory=list)  # extra datasets mixed in by weight
    transforms: list[str] = field(default_factory=list)  # registered row transforms, in order
    system_prompt: Optional[str] = None  # added to every conversation that has none
    label_names: list[str] = field(default_factory=list)  # classification: names of label ids
    packing: Packing = "none"
    collator: str = "auto"  # auto picks by task; see `tunesmith.data.collators.COLLATORS`
    on_bad_rows: BadRows = "error"
    max_bad_fraction: float = 0.05  # with on_bad_rows=skip: fail when more rows than this are bad
    cache: bool = True  # cache tokenized datasets by a fingerprint of data, tokenizer and settings


@dataclass
class QuantizationConfig:
    """4-bit settings for ``peft.method=qlora`` (bitsandbytes)."""

    quant_type: QuantType = "nf4"
    double_quant: bool = True  # quantize the quantization constants too (~0.4 bit per weight saved)
    compute_dtype: ComputeDtype = "bfloat16"


@dataclass
class PeftConfig:
    """The fine-tuning method and its adapter settings.

    lora / dora: adapters on a frozen base; qlora: LoRA on a 4-bit base; int8: LoRA on an 8-bit
    base; full: train the weights themselves (all, only the head, or the last N layers).
    """

    method: PeftMethod = "lora"
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0  # LoRA dropout; 0 skips a copy of every adapted activation
    # "all-linear" (every linear layer but the output head), a per-architecture preset
    # ("attention", "mlp") or explicit module names.
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    bias: LoraBias = "none"
    use_rslora: bool = False  # scale by alpha/sqrt(r) instead of alpha/r
    modules_to_save: list[str] = field(default_factory=list)  # trained in full next to the adapter
    trainable: Trainable = "all"  # with method=full: all weights, the head only, or the last layers
    last_layers: int = 2  # with trainable=last_layers: how many final blocks (plus the head) train
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)


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

    def update_config(self, updates: dict) -> "TrainConfig":
        """Update this config in place from dotted keys, section dicts or aliases; returns self.

        Every value is converted and checked as in a config file; on any error nothing changes.

        Example:
            >>> TrainConfig().update_config({"lr": 5e-4, "peft.r": 8}).train.lr
            0.0005
        """
        # Local import: update.py imports this module (schema stays dependency-free).
        from tunesmith.config.update import update_config

        return update_config(self, updates)
