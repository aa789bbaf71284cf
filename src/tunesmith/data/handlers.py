"""Dataset handlers: ``torch.utils.data.Dataset``-style classes that read their own source and return
tokenized items, built with the run's tokenizer and template settings.

    class QADataset(Dataset):
        def __init__(self, hf_args, template_args, tokenizer, question_key="question", max_length=512): ...
        def __len__(self): ...
        def __getitem__(self, idx): return {"input_ids": [...], "labels": [...]}

A handler is registered by name (``DATASET_REGISTRY["TOFU_QA_FULL"] = QADataset``, or
``register_dataset``'s registry) and named by ``data.train``; ``data.dataset_args`` hold its other
constructor arguments. tunesmith passes ``tokenizer`` and ``template_args`` (the run's
``data.template`` / ``data.tags`` in the handler's spelling) to a constructor that takes them. The
items are pre-tokenized rows (the ``tokenized`` format), so the length rules, packing and
collators of every other dataset apply to them.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Optional

from tunesmith.config.schema import DataConfig
from tunesmith.config.shapes import template_args_for
from tunesmith.data.examples import Conversation, Message
from tunesmith.data.truncation import IGNORE_INDEX
from tunesmith.errors import ConfigError, DataError

HANDLER_INPUTS = ("tokenizer", "template_args")  # what tunesmith passes to a handler's constructor


def is_dataset_class(obj: Any) -> bool:
    """True for a class whose instances are indexed like a Dataset (``__getitem__`` and ``__len__``)."""
    return inspect.isclass(obj) and callable(getattr(obj, "__getitem__", None)) and callable(
        getattr(obj, "__len__", None))


def handler_builder(cls: type) -> Callable[..., list[dict]]:
    """``build(split, seed, n, *, tokenizer, template_args, **options)`` -> the items of ``cls(...)``
    as plain rows; its signature shows the constructor's own options, so they are checked early."""

    def build(split: str, seed: int, n: Optional[int], *, tokenizer: Any = None, template_args: Any = None,
              **options: Any) -> list[dict]:
        if tokenizer is None:
            raise DataError(f"{cls.__name__}: a dataset handler builds tokenized items, so it needs the model's "
                            "tokenizer; load it through FineTuner (train, preprocess_data, evaluate)")
        params = inspect.signature(cls).parameters
        supplied = {k: v for k, v in (("tokenizer", tokenizer), ("template_args", template_args)) if k in params}
        dataset = cls(**supplied, **options)
        return [_plain_row(dataset[i], f"{cls.__name__}[{i}]") for i in range(len(dataset))]

    own = [p for p in inspect.signature(cls).parameters.values()
           if p.name not in HANDLER_INPUTS and p.kind != p.VAR_POSITIONAL]
    head = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ("split", "seed", "n")]
    keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if p.kind != p.VAR_KEYWORD else p for p in own]
    build.__signature__ = inspect.Signature(head + keyword)  # type: ignore[attr-defined]
    build.__qualname__ = cls.__qualname__
    build.needs_tokenizer = True  # type: ignore[attr-defined]
    return build


def _plain_row(item: Any, where: str) -> dict:
    """A handler's item (a dict of lists or tensors) as a dict of plain lists."""
    if not isinstance(item, dict):
        raise DataError(f"{where}: a dataset handler's item must be a dict such as "
                        f"{{'input_ids': [...], 'labels': [...]}}, got {type(item).__name__}")
    return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in item.items()}


class QADataset:
    """Question / answer rows from a hub dataset or a local file, tokenized as one prompt and answer.

    The reference handler (a ``torch.utils.data.Dataset`` by shape: ``__len__`` and ``__getitem__``):
    ``hf_args`` are ``datasets.load_dataset`` arguments (``path``, ``name``, ``split``); each item
    is ``{"input_ids", "labels", "attention_mask"}`` with only the answer trained, rendered with the
    run's template (``template_args``) and cut to ``max_length`` tokens from the end of the prompt.

    Example:
        ``items = QADataset({"path": "rows.jsonl"}, {"apply_chat_template": True}, tokenizer); len(items), sorted(items[0])`` -> ``(24, ['attention_mask', 'input_ids', 'labels'])``
    """

    def __init__(self, hf_args: dict[str, Any], template_args: Optional[dict[str, Any]], tokenizer: Any,
                 question_key: str = "question", answer_key: str = "answer", max_length: int = 512,
                 predict_with_generate: bool = False) -> None:
        from tunesmith.data.sources import load_rows
        from tunesmith.data.templates import template_named

        if predict_with_generate:
            raise ConfigError("data.dataset_args.predict_with_generate: tunesmith generates answers in evaluation "
                              "itself (eval.metric=exact_match, tunesmith eval); leave it false")
        if not isinstance(hf_args, dict) or "path" not in hf_args:
            raise ConfigError(f"data.dataset_args.hf_args: expected {{path: ..., name: ..., split: ...}}, "
                              f"got {hf_args!r}")
        unknown = sorted(set(hf_args) - {"path", "name", "split"})
        if unknown:
            raise ConfigError(f"data.dataset_args.hf_args.{unknown[0]}: not supported; use path, name and split")
        rows = load_rows(str(hf_args["path"]), hf_args.get("split", "train"), key="data.dataset_args.hf_args",
                         subset=hf_args.get("name"))
        self.pairs = [(row[question_key], row[answer_key], where) for row, where in rows]
        self.tokenizer, self.max_length = tokenizer, max_length
        # apply_chat_template (or nothing said): the tokenizer's own template; otherwise the tags given
        tags = bool(template_args) and not template_args.get("apply_chat_template", False)
        self.template = template_named(tokenizer, "tags" if tags else None, data_config_for(template_args).tags)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        from tunesmith.data.tokenize import tokenize_conversation
        from tunesmith.data.truncation import fit_to_length

        question, answer, where = self.pairs[index]
        conversation = Conversation([Message("user", str(question)), Message("assistant", str(answer))], where=where)
        row = tokenize_conversation(self.tokenizer, conversation, "assistant", self.template)
        fitted = fit_to_length(row["input_ids"], row["labels"], self.max_length, "truncate_prompt")
        if fitted.outcome == "too_long" or all(t == IGNORE_INDEX for t in fitted.labels):
            raise DataError(f"{where}: the answer does not fit in max_length={self.max_length} tokens")
        ids = fitted.input_ids
        return {"input_ids": ids, "labels": fitted.labels, "attention_mask": [1] * len(ids)}


def data_config_for(template_args: Optional[dict[str, Any]]) -> DataConfig:
    """The ``DataConfig`` template settings for a handler's ``template_args`` (see ``config/shapes.py``)."""
    from tunesmith.config.shapes import template_keys

    cfg = DataConfig()
    for key, value in template_keys(template_args or {}, "template_args").items():
        leaf = key.split(".", 1)[1]
        if leaf.startswith("tags."):
            cfg.tags = dataclasses.replace(cfg.tags, **{leaf[5:]: value})
        else:
            setattr(cfg, leaf, value)
    return cfg


__all__ = ["HANDLER_INPUTS", "QADataset", "data_config_for", "handler_builder", "is_dataset_class",
           "template_args_for"]
