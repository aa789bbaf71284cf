"""``model.loader_args`` checked against what the model class takes, before the weights are loaded.

With the default loader (``model.loader=auto``) the arguments go to transformers'
``from_pretrained``, which accepts its own options (``attn_implementation``, ``device_map``, ...),
attributes of the model's config (``rope_theta``, ``hidden_dropout_prob``, ...) and parameters of
the model class's constructor; anything else fails only after the weights were read, as a raw
``TypeError``. Here it is a ``ConfigError`` naming the key, in milliseconds: the model's
``config.json`` is all that is read.

Example: ``check_loader_args(ModelConfig(name_or_path="./tiny", loader_args={"foo": 1}), task_of)``
raises ``ConfigError: model.loader_args.foo: not an option of from_pretrained, an attribute of
LlamaConfig nor a parameter of LlamaForCausalLM; ...``
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Callable, Optional

from tunesmith.config.vocabulary import DEFAULT_MODEL_LOADER
from tunesmith.errors import ConfigError, ModelError
from tunesmith.registry import did_you_mean

# Set through their own model.* keys; passing them again would give "multiple values" errors.
OWN_KEYS = {"trust_remote_code": "model.trust_remote_code", "revision": "model.revision",
            "allow_pickle": "model.allow_pickle", "dtype": "model.dtype", "torch_dtype": "model.dtype",
            "device": "model.device", "task": "model.task"}


def from_pretrained_options() -> Optional[set[str]]:
    """The keyword options ``PreTrainedModel.from_pretrained`` reads: its named parameters and the
    ones it pops from ``**kwargs``; None when its source cannot be read (then nothing is checked)."""
    from transformers import PreTrainedModel

    method = PreTrainedModel.from_pretrained
    named = {p.name for p in inspect.signature(method).parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    try:
        source = inspect.getsource(method)
    except (OSError, TypeError):
        return None
    popped = set(re.findall(r"kwargs\.pop\(\s*[\"'](\w+)[\"']", source))
    return (named | popped) - {"pretrained_model_name_or_path"} if popped else None


def check_loader_args(model_cfg: Any, task_of: Callable[[Any], str]) -> None:
    """Raise ``ConfigError`` for a ``model.loader_args`` key the model would not take (default loader only).

    ``task_of(model_config)`` gives the model's task (the run decides it: ``model.task`` or the architecture).

    A model whose config cannot be read here (a hub id not downloaded yet) is not checked: loading
    it reports that problem itself.
    """
    args = dict(model_cfg.loader_args or {})
    if model_cfg.loader != DEFAULT_MODEL_LOADER or not args:
        return
    for key in args:
        if key in OWN_KEYS:
            raise ConfigError(f"model.loader_args.{key}: set {OWN_KEYS[key]} instead; tunesmith passes it to the "
                              "loader itself")
    from tunesmith.models.loading import load_model_config

    try:
        config = load_model_config(model_cfg.name_or_path, model_cfg.trust_remote_code, model_cfg.revision)
        task = task_of(config)
    except (ModelError, ConfigError, OSError, ValueError):
        return
    options = from_pretrained_options()
    if options is None:
        return
    model_class = _model_class(config, task)
    init = set()
    if model_class is not None:
        try:
            init = {p.name for p in inspect.signature(model_class.__init__).parameters.values()
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self", "config"}
        except (TypeError, ValueError):
            return
    config_keys = set(config.to_dict())
    for key in args:
        if key in options or key in init or key in config_keys or hasattr(config, key):
            continue
        class_name = getattr(model_class, "__name__", "the model class")
        near = did_you_mean(key, sorted(options | init | config_keys))
        raise ConfigError(f"model.loader_args.{key}: not an option of from_pretrained, an attribute of "
                          f"{type(config).__name__} nor a parameter of {class_name}.{near} Options include: "
                          "attn_implementation, device_map, quantization_config, and any key of the model's "
                          "config.json")


def _model_class(config: Any, task: str) -> Any:
    """The transformers class ``from_pretrained`` builds for this config and task; None when unknown."""
    import transformers

    auto = {"causal_lm": transformers.AutoModelForCausalLM, "seq2seq": transformers.AutoModelForSeq2SeqLM,
            "sequence_classification": transformers.AutoModelForSequenceClassification}.get(task)
    try:
        found = auto._model_mapping[type(config)] if auto is not None else None
    except (KeyError, AttributeError, ValueError):
        return None
    return found[0] if isinstance(found, (list, tuple)) else found

