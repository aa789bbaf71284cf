"""Fine-tuning methods: LoRA / DoRA adapters through peft (also on 4-bit and 8-bit bases), or full
fine-tuning of all weights, the head only, or the last N layers."""

from __future__ import annotations

import re
from typing import Any

from tunesmith.config.schema import PeftConfig
from tunesmith.errors import ConfigError

PEFT_TASK_TYPES = {"causal_lm": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM", "sequence_classification": "SEQ_CLS"}

# Per-architecture module names for the presets `peft.target_modules=attention` / `mlp`.
# T5-style models name their projections q, k, v, o; BERT-style ones query, key, value.
PRESETS: dict[str, dict[str, list[str]]] = {
    "attention": {
        "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "gpt2": ["c_attn", "c_proj"],
        "t5": ["q", "k", "v", "o"],
        "bert": ["query", "key", "value"],
        "roberta": ["query", "key", "value"],
    },
    "mlp": {
        "llama": ["gate_proj", "up_proj", "down_proj"],
        "mistral": ["gate_proj", "up_proj", "down_proj"],
        "qwen2": ["gate_proj", "up_proj", "down_proj"],
        "gpt2": ["c_fc", "c_proj"],
        "t5": ["wi", "wo", "wi_0", "wi_1"],
        "bert": ["intermediate.dense", "output.dense"],
        "roberta": ["intermediate.dense", "output.dense"],
    },
}
# Names of classification / LM heads, trained in full next to adapters or alone with trainable=head.
HEAD_NAMES = ("classifier", "score", "lm_head", "qa_outputs")


def resolve_target_modules(names: list[str], model_type: str) -> str | list[str]:
    """``["all-linear"]`` -> ``"all-linear"`` (peft's shorthand for every linear layer but the
    output head); ``["attention"]`` on a Llama -> ``["q_proj", "k_proj", "v_proj", "o_proj"]``;
    explicit names pass through."""
    if names == ["all-linear"]:
        return "all-linear"
    out: list[str] = []
    for name in names:
        if name in PRESETS:
            by_type = PRESETS[name]
            if model_type not in by_type:
                raise ConfigError(
                    f"peft.target_modules: the preset {name!r} has no entry for model type {model_type!r}; "
                    f"known: {', '.join(sorted(by_type))}. Give module names or all-linear instead"
                )
            out += [m for m in by_type[model_type] if m not in out]
        else:
            out.append(name)
    return out


def apply_adapter(model: Any, cfg: PeftConfig, task: str) -> Any:
    """Make ``model`` trainable with ``cfg.method``; returns the model to train. A model that already
    carries a trainable adapter (``model.adapter``, see ``start_adapter``) is returned as it is."""
    if hasattr(model, "peft_config") and any(p.requires_grad for p in model.parameters()):
        return model
    if cfg.method == "full":
        return _apply_full(model, cfg)
    from peft import LoraConfig, get_peft_model

    model_type = getattr(model.config, "model_type", "")
    lora = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=resolve_target_modules(cfg.target_modules, model_type),
        task_type=PEFT_TASK_TYPES[task],
        use_dora=cfg.method == "dora",
        use_rslora=cfg.use_rslora,
        bias=cfg.bias,
        # A classification head is new (randomly initialised): peft's SEQ_CLS task type already
        # trains it in full; extra modules come from the config.
        modules_to_save=list(cfg.modules_to_save) or None,
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as err:  # peft names the modules it could not find
        raise ConfigError(f"peft.target_modules: {cfg.target_modules!r} does not fit this model: {err}") from err


def _apply_full(model: Any, cfg: PeftConfig) -> Any:
    """All weights, only the head, or the last ``cfg.last_layers`` blocks plus the head.

    Names are read with duplicates, so a head tied to the input embeddings (one tensor, two names)
    is found under either name and trained once.
    """
    named = list(model.named_parameters(remove_duplicate=False))
    names = [n for n, _ in named]
    if cfg.trainable == "all":
        chosen = set(names)
    else:
        chosen = {n for n in names if _is_head(n)}
        if cfg.trainable == "last_layers":
            chosen |= _last_layer_params(names, cfg.last_layers)
        if not chosen:
            raise ConfigError(f"peft.trainable: {cfg.trainable!r} found no head parameters in this model "
                              f"(looked for {', '.join(HEAD_NAMES)}); use trainable=all")
    trained = {id(p) for n, p in named if n in chosen}
    for _, p in named:
        p.requires_grad_(id(p) in trained)
    return model


def _is_head(name: str) -> bool:
    return name.split(".")[0] in HEAD_NAMES or any(f".{h}." in f".{name}" for h in HEAD_NAMES[:2])


def _last_layer_params(names: list[str], n: int) -> set[str]:
    """Parameters of the last ``n`` numbered blocks (``model.layers.29.*``, ``encoder.layer.5.*``)."""
    pattern = re.compile(r"^(.*?\.(?:layers|layer|h|block))\.(\d+)\.")
    indices: dict[str, set[int]] = {}
    for name in names:
        m = pattern.match(name)
        if m:
            indices.setdefault(m.group(1), set()).add(int(m.group(2)))
    keep = {(stack, i) for stack, found in indices.items() for i in sorted(found)[-n:]}
    chosen = set()
    for name in names:
        m = pattern.match(name)
        if m and (m.group(1), int(m.group(2))) in keep:
            chosen.add(name)
    return chosen


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
