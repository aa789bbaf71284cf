"""The typed config schema. Every key a user can set lives here, with its default.

Fixed choices are ``Literal`` types; names resolved through a registry (data formats, trainers,
built-in datasets) are plain strings checked against that registry before anything is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

Task = Literal["auto", "causal_lm", "seq2seq", "sequence_classification"]
WeightDtype = Literal["auto", "float32", "bfloat16", "float16"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
LossOn = Literal["all", "assistant", "last_assistant"]
RerenderedHistory = Literal["error", "per_turn", "last_turn"]
PeftMethod = Literal["lora", "dora", "qlora", "int8", "full"]
Trainable = Literal["all", "head", "last_layers"]
LoraBias = Literal["none", "all", "lora_only"]
QuantType = Literal["nf4", "fp4"]
ComputeDtype = Literal["bfloat16", "float16", "float32"]
Scheduler = Literal["linear", "cosine", "constant", "constant_with_warmup"]
BeforeAfter = Literal["auto", "on", "off"]
Truncation = Literal["drop", "truncate_prompt", "truncate_end"]
Packing = Literal["auto", "none", "padding_free", "group_by_length", "pack"]
# Causal-LM architectures whose transformers 5.x attention keeps the examples of a row apart by
# restarting position_ids: data.packing=auto makes their batches padding-free.
PADDING_FREE_MODEL_TYPES = frozenset({
    "llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "olmo", "olmo2", "smollm3", "starcoder2",
})
BadRows = Literal["error", "skip"]
Optimizer = Literal["adamw", "adamw_8bit", "paged_adamw", "paged_adamw_8bit", "sgd"]
Interval = Literal["auto", "no", "steps", "epoch"]
BestMetric = Literal["loss", "accuracy"]
LogTarget = Literal["tensorboard", "mlflow"]
Strategy = Literal["ddp", "fsdp", "deepspeed"]
FsdpSharding = Literal["full_shard", "shard_grad_op"]
DdpBackend = Literal["auto", "nccl", "gloo"]
NanPolicy = Literal["stop", "skip"]
Logits = Literal["label_only", "full"]
Attention = Literal["auto", "varlen", "segments", "sdpa", "eager", "flash_attention_2"]
HubKernels = Literal["auto", "on", "off"]
FrozenWeights = Literal["auto", "as_loaded"]
LoraKernel = Literal["auto", "fused", "peft"]
Compile = Literal["auto", "on", "off"]
MemoryTrim = Literal["auto", "on", "off"]
MemoryProbe = Literal["auto", "on", "off"]
PreferenceLoss = Literal["sigmoid", "ipo", "simpo"]
Reference = Literal["auto", "adapter_off", "copy", "precomputed"]


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
    # How the weights are loaded: auto (hub id, folder, .gguf, alias), a registered model loader, or
    # 'package.module:function'; loader_args are passed to it (checked against its signature).
    loader: str = "auto"
    loader_args: dict[str, Any] = field(default_factory=dict)
    # transformers' hub kernels (downloaded compiled layers, e.g. rotary embeddings on CUDA).
    # auto: used when every kernel the model needs on its device is in the local cache or the hub
    # can be reached, else off with one line saying so; on: required (an error names what is
    # missing); off: never.
    hub_kernels: HubKernels = "auto"
    # A LoRA / DoRA adapter to start from and keep training (a tunesmith run directory or a peft
    # adapter folder made for this base model); None: a new adapter. Used by preference and GRPO
    # runs that continue a supervised run (model.adapter=runs/sft).
    adapter: Optional[str] = None


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
    # Arguments for a registered or 'package.module:attr' dataset named by train / eval.
    dataset_args: dict[str, Any] = field(default_factory=dict)
    # Tokenizes the examples: chat_template (default), a registered preprocessor or 'package.module:Class'.
    preprocessor: str = "chat_template"
    preprocessor_args: dict[str, Any] = field(default_factory=dict)
    eval: Optional[str] = None  # same kinds as train; built-in datasets use their test split
    eval_split: float = 0.0  # fraction of train held out for evaluation when eval is not given
    subset: Optional[str] = None  # hub dataset config name (datasets.load_dataset's second argument)
    split: str = "train"  # split of data.train to train on
    eval_split_name: Optional[str] = None  # split of data.train used as the eval set (e.g. test)
    format: str = "auto"  # see `tunesmith.data.formats.FORMATS`; auto detects from the columns
    columns: dict[str, str] = field(default_factory=dict)  # canonical name -> column in the file
    # auto (the tokenizer's own; continuation when it has none) | chatml | llama3 | alpaca | plain |
    # continuation | tags
    template: str = "auto"
    tags: PromptTags = field(default_factory=PromptTags)
    max_length: int = 512  # tokens per example
    truncation: Truncation = "drop"  # what happens to longer examples; each one is counted
    min_length: int = 0  # drop examples shorter than this many tokens
    loss_on: LossOn = "assistant"
    # A conversation the template does not render as a growing prefix (it re-renders earlier turns,
    # as Qwen3 drops earlier <think> blocks): error | per_turn (one example per trained answer,
    # with the history as the template renders it at that turn) | last_turn (the last answer only).
    rerendered_history: RerenderedHistory = "error"
    max_samples: Optional[int] = None  # cap on training examples (seeded shuffle first)
    dedupe: bool = False  # drop exact duplicate examples
    mix: list[MixSource] = field(default_factory=list)  # extra datasets mixed in by weight
    transforms: list[str] = field(default_factory=list)  # registered row transforms, in order
    system_prompt: Optional[str] = None  # added to every conversation that has none
    label_names: list[str] = field(default_factory=list)  # classification: names of label ids
    # auto: padding_free for causal LMs of known architectures (llama, qwen2, mistral, ...), else none.
    # padding_free: each batch in one row, no padding, same batches as none; pack: bin-pack examples
    # into rows of max_length; group_by_length: batches of similar lengths (see docs/data.md).
    packing: Packing = "auto"
    collator: str = "auto"  # auto picks by task; see `tunesmith.data.collators.COLLATORS`
    collator_args: dict[str, Any] = field(default_factory=dict)  # extra arguments for the collator
    on_bad_rows: BadRows = "error"
    max_bad_fraction: float = 0.05  # with on_bad_rows=skip: fail when more rows than this are bad
    cache: bool = True  # cache tokenized datasets by a fingerprint of data, tokenizer and settings
    # Processes that tokenize (1: this process only); each takes a contiguous shard of the examples.
    num_proc: int = 1
    # Read data.train lazily while training (JSONL, Parquet, .txt files or a hub dataset): rows are
    # converted, tokenized and packed as the batches are drawn, so memory stays flat on a corpus
    # larger than RAM. Needs train.max_steps; the corpus starts again when it ends (docs/data.md).
    streaming: bool = False
    # With streaming: examples held in a buffer and drawn from it at random (seeded by train.seed);
    # 0 keeps the file's order.
    shuffle_buffer: int = 0
    # Unlearning trainers (grad_diff, npo): the examples whose behaviour must stay; data.train is
    # the forget set. Same kinds as data.train; a built-in uses its test split as held-out.
    retain: Optional[str] = None


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
class DistributedConfig:
    """How a run started on several processes (torchrun, accelerate launch) shares the work.

    The same config runs on one process or many: ``ddp`` keeps a full model copy per process and
    averages gradients; ``fsdp`` and ``deepspeed`` shard parameters, gradients and optimizer state.
    """

    strategy: Strategy = "ddp"
    backend: DdpBackend = "auto"  # auto: nccl on CUDA, gloo on CPU
    # full_shard: parameters, gradients and optimizer state sharded (like ZeRO-3);
    # shard_grad_op: parameters gathered for the whole step, the rest sharded (like ZeRO-2).
    fsdp_sharding: FsdpSharding = "full_shard"
    fsdp_offload: bool = False  # FSDP: parameters and optimizer state wait on the CPU
    zero_stage: int = 2  # DeepSpeed ZeRO stage: 1 optimizer state, 2 + gradients, 3 + parameters
    zero_offload: bool = False  # DeepSpeed: optimizer state (and stage-3 parameters) on the CPU
    deepspeed_config: Optional[str] = None  # a DeepSpeed JSON file; replaces zero_stage / zero_offload
    timeout_s: int = 1800  # seconds a process waits for the others (e.g. while rank 0 evaluates)


@dataclass
class UnlearningConfig:
    """Hyper-parameters of the unlearning trainers ``grad_ascent``, ``grad_diff`` and ``npo``."""

    forget_weight: float = 1.0  # scale of the forget-set term
    retain_weight: float = 1.0  # grad_diff / npo: scale of the retain-set NLL (0: no retain term)
    beta: float = 0.1  # npo: inverse temperature; as beta -> 0 NPO approaches gradient ascent


@dataclass
class PreferenceConfig:
    """Hyper-parameters of the preference trainers ``dpo``, ``orpo``, ``kto`` and ``reward``."""

    # dpo: sigmoid (DPO), ipo (squared distance of the log-ratio margin from 1/(2 beta)) or simpo
    # (reference-free: length-normalised log-probabilities with a target margin simpo_gamma).
    loss: PreferenceLoss = "sigmoid"
    beta: float = 0.1  # inverse temperature of the implicit reward beta * log(p / p_ref)
    simpo_gamma: float = 0.5  # loss=simpo: the margin (in nats per token x beta) chosen must win by
    sft_weight: float = 0.0  # dpo: weight of the chosen answers' NLL added to the loss (0: none)
    orpo_weight: float = 0.1  # orpo: weight of the odds-ratio term next to the chosen answers' NLL
    desirable_weight: float = 1.0  # kto: weight of desirable (label true) examples
    undesirable_weight: float = 1.0  # kto: weight of undesirable (label false) examples
    # The frozen model the implicit reward compares with (dpo with sigmoid / ipo, kto): the model as
    # training starts. auto: the base with the adapter switched off when the adapter is new, a
    # snapshot of the starting adapter when training continues one (model.adapter); full fine-tuning
    # must choose: copy (a frozen second copy, twice the memory) or precomputed (the reference
    # log-probabilities of every example computed once before training, no second copy).
    reference: Reference = "auto"


@dataclass
class GrpoConfig:
    """Hyper-parameters of ``train.trainer=grpo`` (group relative policy optimisation)."""

    # Reward functions, summed with reward_weights: registered names (exact_match, number_format,
    # answer_length) or 'package.module:function' taking (completions, references, prompts) and
    # returning one number per completion.
    rewards: list[str] = field(default_factory=lambda: ["exact_match"])
    reward_weights: list[float] = field(default_factory=list)  # one per reward; empty: all 1.0
    reward_args: dict[str, dict[str, Any]] = field(default_factory=dict)  # reward name -> keyword arguments
    group_size: int = 8  # completions sampled per prompt; advantages are relative within the group
    kl_weight: float = 0.0  # weight of the KL penalty against the starting model (0: none, no reference pass)
    max_new_tokens: int = 128  # tokens sampled per completion at most
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k filter
    scale_rewards: bool = True  # divide each group's advantages by its reward standard deviation


@dataclass
class TrainSection:
    """Optimisation settings. One optimizer step sees batch_size × grad_accum sequences."""

    trainer: str = "auto"  # auto: sft, seq2seq or classification by the model's task
    trainer_args: dict[str, Any] = field(default_factory=dict)  # extra arguments for the trainer factory
    # The defaults are the packaged job's (configs/train/default.yaml), so TrainConfig() and
    # `tunesmith train` run the same thing: 150 steps at lr 1e-3, a few minutes on a laptop CPU.
    # Giving epochs anywhere clears the step limit (tunesmith.config.lengths).
    epochs: float = 1.0
    max_steps: int = 150  # > 0 decides the length; -1: train.epochs decide it
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-3
    scheduler: Scheduler = "cosine"
    warmup_ratio: float = 0.05
    warmup_steps: int = 0  # > 0: warm up over this many optimizer steps instead of warmup_ratio
    weight_decay: float = 0.0
    seed: int = 42
    precision: Precision = "auto"
    logging_steps: int = 10
    save_steps: int = 0  # 0: save only at the end
    eval_steps: int = 0  # 0: no evaluation loss during training
    num_threads: int = 0  # CPU threads; 0 lets torch decide
    optimizer: Optimizer = "adamw"  # adamw_8bit / paged_*: bitsandbytes (8-bit state: ~75% less memory)
    max_grad_norm: float = 1.0  # clip gradients to this global L2 norm; 0 turns clipping off
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, slower
    eval_strategy: Interval = "auto"  # auto: every eval_steps when eval_steps > 0, else no
    save_strategy: Interval = "auto"  # auto: every save_steps when save_steps > 0, else only the end
    save_limit: int = 0  # checkpoints kept in checkpoints/ (oldest deleted first); 0 keeps all
    # Checkpoints hold the weights only (no optimizer, scheduler or RNG state): smaller, but a run
    # resumed from one restarts its optimizer and learning-rate schedule.
    save_only_model: bool = False
    bf16_full_eval: bool = False  # evaluation during training runs the model in bf16 (not autocast)
    keep_best: bool = False  # at the end, load the checkpoint with the best best_metric and save it
    best_metric: BestMetric = "loss"  # eval metric for keep_best and early stopping (accuracy: classifiers)
    early_stopping_patience: int = 0  # stop after this many evaluations without improvement; 0: off
    early_stopping_threshold: float = 0.0  # smallest change of best_metric that counts as improvement
    callbacks: list[str] = field(default_factory=list)  # registered names or 'package.module:Class'
    callback_args: dict[str, dict[str, Any]] = field(default_factory=dict)  # callback name -> arguments
    log_to: list[LogTarget] = field(default_factory=list)  # tensorboard, mlflow (metrics.jsonl always)
    # TensorBoard's folder (default <run_dir>/tensorboard); setting it turns TensorBoard logging on.
    logging_dir: Optional[str] = None
    mlflow_tracking_uri: Optional[str] = None  # default: a local file store in <run_dir>/mlruns
    mlflow_experiment: str = "tunesmith"
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    unlearning: UnlearningConfig = field(default_factory=UnlearningConfig)
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)
    grpo: GrpoConfig = field(default_factory=GrpoConfig)
    # auto: continue from the newest complete checkpoint in output_dir/checkpoints when there is one;
    # none: always start fresh; or the path of a checkpoint folder (or a run directory) to continue from.
    resume: str = "auto"
    # A NaN/inf loss or gradient: stop (with the step, the batch's examples and the last good
    # checkpoint) or skip that optimizer step (counted and reported).
    nan_policy: NanPolicy = "stop"
    # speed (measured in docs/benchmarks.md)
    # label_only: the output head runs only where a token is trained, in chunks, and never builds
    # the tokens x vocabulary logits; full: the model's own forward and loss at every position.
    logits: Logits = "label_only"
    logits_chunk: int = 1024  # rows per output-head matmul (1024 x 49,152 fp32 logits = 192 MiB)
    # auto: with padding-free batches, attention within each example of a row: varlen (one flash
    # call per layer) on CUDA in bf16/fp16, segments (one SDPA call per example) elsewhere; with
    # padded batches transformers' SDPA. varlen / segments force one; sdpa / eager /
    # flash_attention_2 are transformers' implementations (a block mask over packed rows).
    attention: Attention = "auto"
    # auto: on a CPU under bf16 autocast, frozen linear weights are held in bf16 while training
    # (the same values autocast computes each step; restored afterwards); as_loaded: untouched.
    frozen_weights: FrozenWeights = "auto"
    # auto: with peft.method=lora on a CPU or CUDA (not sharded by fsdp / deepspeed), each LoRA linear
    # layer runs as one autograd step (tunesmith.training.fused_lora: one input cast, the low-rank
    # term added inside the base matmul); fused forces it; peft keeps peft's layers as they are.
    lora_kernel: LoraKernel = "auto"
    # on: each decoder layer trains through torch.compile (tunesmith.training.compiled_layers: one
    # compiled layer serves them all, with dynamic shapes for rows of any length; evaluation and
    # generation stay eager); off: eager; auto: where it was measured to pay (docs/benchmarks.md).
    compile: Compile = "auto"
    # memory (tunesmith.training.host_memory; measured in docs/benchmarks.md): auto gives the memory
    # each optimizer step freed back to the operating system (glibc malloc_trim) when training on a
    # CPU under Linux; on: on any device (glibc only); off: never.
    memory_trim: MemoryTrim = "auto"
    # Before the first optimizer step the longest batch runs forward and backward once (no step, the
    # random generators put back), so running out of memory happens at once, with the settings to
    # change (tunesmith.training.memory_probe). auto: on a GPU (cuda, mps), not on a CPU; on; off.
    memory_probe: MemoryProbe = "auto"
    # CPU kernels (oneDNN primitives, each with its own copy of a weight) torch caches per process;
    # torch's default, 1024, fills at several MiB per step when the row length changes every step.
    cpu_kernel_cache: int = 16


@dataclass
class EvalConfig:
    """Held-out evaluation before and after training."""

    before_after: BeforeAfter = "auto"  # auto: on for built-in datasets
    # auto (by task and data), exact_match, rouge_l, accuracy, perplexity, a registered metric or
    # 'package.module:function'; see tunesmith.evaluation.metrics.
    metric: str = "auto"
    max_samples: int = 100  # held-out prompts answered by generation (classifiers and perplexity use all)
    max_new_tokens: int = 96
    batch_size: int = 32
    do_sample: bool = False  # greedy decoding unless true
    temperature: float = 0.7  # with do_sample
    top_p: float = 0.9  # with do_sample: nucleus sampling keeps this much probability mass
    show_samples: int = 1  # sample answers printed side by side
    # Answers prompts in generate / chat / evaluation: chat (default), a registered handler or
    # 'package.module:Class'; a constructor that takes system_prompt receives data.system_prompt.
    inference_handler: str = "chat"
    inference_handler_args: dict[str, Any] = field(default_factory=dict)


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
    force_resume: bool = False  # resume even when the config changed the data, model, seed or batch size
    # Command line / Python only: let a config file from another folder name paths outside it.
    allow_outside_paths: bool = False

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
