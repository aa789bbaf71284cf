"""The data pipeline: config -> raw rows -> conversations -> token ids, with statistics.

``build_datasets`` is what the trainer consumes; ``load_eval_conversations`` is what evaluation
(generation and scoring) consumes. Both read the same config keys.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Optional

from tunesmith.config.schema import DataConfig
from tunesmith.data.builtin import BUILTIN_DATASETS
from tunesmith.data.examples import Conversation, Message
from tunesmith.data.formats import FORMATS, to_conversations
from tunesmith.data.sources import check_source, is_builtin, load_rows
from tunesmith.data.tokenize import TokenizeStats, tokenize_all
from tunesmith.errors import DataError


@dataclass
class DataBundle:
    """Tokenized train (and optional eval) sets, ready for a Trainer."""

    train: Any  # datasets.Dataset with input_ids, labels
    eval: Optional[Any]
    train_stats: TokenizeStats
    eval_stats: Optional[TokenizeStats]


def check_data_config(cfg: DataConfig) -> None:
    """Cheap checks of names and paths, run before any model is loaded."""
    if cfg.format != "auto":
        FORMATS.get(cfg.format)
    check_source(cfg.train, "data.train")
    if cfg.eval:
        check_source(cfg.eval, "data.eval")


def _with_system(conversations: list[Conversation], system_prompt: Optional[str]) -> list[Conversation]:
    if system_prompt:
        for c in conversations:
            if c.messages and c.messages[0].role != "system":
                c.messages.insert(0, Message("system", system_prompt))
    return conversations


def load_conversations(cfg: DataConfig, seed: int) -> tuple[list[Conversation], list[Conversation]]:
    """Train and held-out conversations, following data.train / data.eval / data.eval_split."""
    train = to_conversations(load_rows(cfg.train, "train", seed, "data.train"), cfg.format)
    if cfg.eval:
        split = "test" if is_builtin(cfg.eval) else "train"
        held_out = to_conversations(load_rows(cfg.eval, split, seed, "data.eval"), cfg.format)
    elif is_builtin(cfg.train):
        held_out = to_conversations(load_rows(cfg.train, "test", seed, "data.train"), cfg.format)
    elif cfg.eval_split > 0:
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        n_eval = max(1, int(round(len(train) * cfg.eval_split)))
        held_out = [train[i] for i in sorted(order[:n_eval])]
        train = [train[i] for i in sorted(order[n_eval:])]
    else:
        held_out = []
    if cfg.max_samples is not None and len(train) > cfg.max_samples:
        rng = random.Random(seed)
        train = rng.sample(train, cfg.max_samples)
    system = cfg.system_prompt or _builtin_system_prompt(cfg.train)
    return _with_system(train, system), _with_system(held_out, cfg.system_prompt or _builtin_system_prompt(cfg.eval or cfg.train))


def _builtin_system_prompt(spec: str) -> Optional[str]:
    return BUILTIN_DATASETS.get(spec).system_prompt if is_builtin(spec) else None


def build_datasets(cfg: DataConfig, tokenizer: Any, seed: int) -> DataBundle:
    """Tokenize train and held-out sets; errors if nothing trainable is left."""
    import datasets

    train_conv, eval_conv = load_conversations(cfg, seed)
    train_rows, train_stats = tokenize_all(tokenizer, train_conv, cfg.loss_on, cfg.max_length, "Tokenizing train")
    if not train_rows:
        raise DataError(
            f"data.train: none of the {len(train_conv)} examples can be trained: "
            f"{train_stats.dropped_too_long} are longer than data.max_length={cfg.max_length} tokens and "
            f"{train_stats.dropped_no_trained_token} have no trained token under data.loss_on={cfg.loss_on!r}. "
            f"First ones: {'; '.join(train_stats.examples_dropped[:3])}"
        )
    eval_ds, eval_stats = None, None
    if eval_conv:
        eval_rows, eval_stats = tokenize_all(tokenizer, eval_conv, cfg.loss_on, cfg.max_length, "Tokenizing eval")
        eval_ds = datasets.Dataset.from_list(eval_rows) if eval_rows else None
    return DataBundle(datasets.Dataset.from_list(train_rows), eval_ds, train_stats, eval_stats)


def load_eval_conversations(cfg: DataConfig, seed: int, limit: int) -> list[Conversation]:
    """Up to ``limit`` held-out conversations that carry a reference answer (for exact match)."""
    _, held_out = load_conversations(cfg, seed)
    for c in held_out:
        if c.reference is None:
            c.reference = c.last_answer()
    return held_out[:limit]
