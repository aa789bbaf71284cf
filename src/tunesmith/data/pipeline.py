"""The data pipeline: config -> raw rows -> canonical examples -> token ids, with statistics.

    rows      sources.load_rows           (files, folders, globs, saved datasets, hub, built-ins)
    rows      transforms.apply_row_transforms   (data.transforms)
    examples  formats.prepare_parser + bad_rows.BadRowPolicy   (data.format, data.columns, data.on_bad_rows)
    examples  held-out split, data.mix, data.dedupe, data.max_samples
    Arrow     tokenize_workers.tokenize_to_table  (data.template, data.loss_on, data.max_length,
              data.truncation, data.num_proc); cached (data.cache, see ``cache.py``): a second
              run with the same files and settings reads only the cached, memory-mapped tables
    rows      packing.pack_examples       (data.packing=pack)

``build_datasets`` is what the trainer consumes; ``load_eval_conversations`` is what evaluation
by generation consumes. Both read the same config keys.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass, field
from typing import Any, Optional

from tunesmith.config.vocabulary import Task
from tunesmith.config.schema import DataConfig
from tunesmith.config.shapes import template_args_for
from tunesmith.config.validate import build_config
from tunesmith.data.bad_rows import BadRowPolicy, BadRowReport
from tunesmith.data.builtin import BUILTIN_DATASETS
from tunesmith.data.cache import data_key, entry_lock, load_entry, save_entry, settings_for_key
from tunesmith.data.examples import (
    Conversation,
    Message,
    as_eval_conversation,
    example_from_dict,
    example_to_dict,
    one_answer_per_prompt,
)
from tunesmith.data.formats import FORMATS, FormatInfo, check_columns, prepare_parser
from tunesmith.data.gc_pause import paused_gc
from tunesmith.data.packing import PackStats, check_packing_for_kind, pack_examples
from tunesmith.data.presets import apply_preset
from tunesmith.data.sources import check_source, file_stamps, is_builtin, load_rows
from tunesmith.data.stop_token import check_stop_token
from tunesmith.data.templates import BUILTIN_KINDS, check_template_name, load_named_template
from tunesmith.data.tokenize import TokenizeSettings, TokenizeStats
from tunesmith.data.tokenize_workers import table_to_dataset, tokenize_to_table
from tunesmith.data.transforms import apply_row_transforms, check_row_transforms, dedupe, mix, sample
from tunesmith.errors import DataError

logger = logging.getLogger(__name__)


@dataclass
class ExampleSet:
    """Canonical examples read from one dataset, with what reading found out."""

    examples: list[Any]
    info: FormatInfo
    bad_rows: Optional[BadRowReport] = None


@dataclass
class DataBundle:
    """Tokenized train (and optional eval) sets, ready for a Trainer, and how they were made."""

    train: Any  # datasets.Dataset with input_ids, labels (and position_ids when packed)
    eval: Optional[Any]
    train_stats: TokenizeStats
    eval_stats: Optional[TokenizeStats]
    info: Optional[FormatInfo] = None
    label_names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # bad rows skipped, duplicates, mixing, cache hits
    pack_stats: Optional[PackStats] = None
    held_out: list[Any] = field(default_factory=list)  # canonical held-out examples (before tokenizing)
    streamed: bool = False  # train is a ``streaming.TokenStream`` (data.streaming): no length, no indexing

    # Used like the tokenized training set it holds, as code written for a datasets.Dataset expects:
    # ``len(bundle)``, ``bundle[0]["input_ids"]``, ``for row in bundle``, ``bundle.column_names``.
    def __len__(self) -> int:
        """The number of training rows (``len(bundle.train)``)."""
        return len(self.train)

    def __getitem__(self, index: Any) -> Any:
        """A training row, a slice or a column of ``bundle.train`` (``bundle[0]``, ``bundle["input_ids"]``)."""
        return self.train[index]

    def __iter__(self) -> Any:
        """The training rows in order."""
        return iter(self.train)

    def __getattr__(self, name: str) -> Any:
        """Attributes of ``datasets.Dataset`` (``column_names``, ``features``, ``map``...) from ``train``."""
        if name.startswith("_") or name == "train":  # copy / pickle probes, and a bundle still being built
            raise AttributeError(name)
        return getattr(self.train, name)


def resolved_data_config(cfg: DataConfig) -> DataConfig:
    """Fill unset keys from a built-in dataset's metadata or a hub preset (user values win); the
    format is the run's to choose (``tunesmith.api.choices.data``)."""
    if is_builtin(cfg.train):
        builtin = BUILTIN_DATASETS.get(cfg.train)
        changes: dict[str, Any] = {}
        if not cfg.label_names and builtin.label_names:
            changes["label_names"] = list(builtin.label_names)
        if cfg.system_prompt is None and builtin.system_prompt:
            changes["system_prompt"] = builtin.system_prompt
        return dataclasses.replace(cfg, **changes) if changes else cfg
    return apply_preset(cfg)


def has_held_out(cfg: DataConfig) -> bool:
    """True when the data config gives held-out examples: ``data.eval``, ``data.eval_split > 0``, a
    held-out split (``data.eval_split_name``) or a built-in / preset dataset with its own test split."""
    cfg = resolved_data_config(cfg)
    return bool(cfg.eval) or cfg.eval_split > 0 or _held_out_split(cfg) is not None


def check_values_data(cfg: DataConfig) -> DataConfig:
    """Range checks of a DataConfig built on its own (the full config checks these too)."""
    from tunesmith.config.schema import TrainConfig
    from tunesmith.config.validate import check_values

    return check_values(TrainConfig(data=cfg)).data


def check_data_config(cfg: DataConfig) -> None:
    """Cheap checks of names and paths, run before any model is loaded. ``cfg`` holds chosen values:
    ``format`` a registered name or None (detected from the columns), ``template`` a name or None
    (the tokenizer's own), ``packing`` a concrete one (``tunesmith.api.choices.data.concrete_data``)."""
    if cfg.format is not None:
        FORMATS.get(cfg.format)
        check_packing_for_kind(cfg.packing, FORMATS.get(cfg.format).kind)  # a packing the data's kind cannot use
    check_columns(cfg.columns, cfg.format)
    check_template_name(cfg.template)
    check_row_transforms(cfg.transforms)
    check_source(cfg.train, "data.train", cfg.dataset_args)
    if cfg.streaming:
        from tunesmith.data.stream_sources import check_stream_source
        from tunesmith.data.streaming import check_streaming_config

        check_streaming_config(cfg)
        check_stream_source(cfg.train, cfg.split)
    if cfg.eval:
        check_source(cfg.eval, "data.eval", _handler_args(cfg, cfg.eval))
    for i, source in enumerate(cfg.mix):
        if source.format is not None:
            FORMATS.get(source.format)
        check_source(source.train, f"data.mix[{i}].train")


def _handler_args(cfg: DataConfig, spec: str) -> Optional[dict[str, Any]]:
    """``data.dataset_args`` for the registered or dotted-path dataset of ``data.train`` (and of
    ``data.eval`` when it names the same one); files, hub ids, ``data.mix`` sources and another
    registered ``data.eval`` take none (a DPO run on ``arith-pref`` with ``{rejected: slip}``,
    scored on ``arith``, asks arith without them)."""
    return cfg.dataset_args if is_builtin(spec) and spec == cfg.train else None


def read_examples(cfg: DataConfig, spec: str, split: str, seed: int, key: str,
                  columns: Optional[dict[str, str]] = None, subset: Optional[str] = None,
                  tokenizer: Any = None) -> ExampleSet:
    """Rows of one dataset split -> canonical examples in ``cfg.format`` (None: detected from the
    columns), under the bad-row policy.

    ``tokenizer`` reaches dataset handler classes, which tokenize their own items.
    """
    policy = BadRowPolicy(cfg.on_bad_rows, cfg.max_bad_fraction, key=key)
    read_errors = policy.collector()
    rows = load_rows(spec, split, seed, key, subset=subset, bad_rows=read_errors, args=_handler_args(cfg, spec),
                     tokenizer=tokenizer, template_args=template_args_for(cfg))
    rows = apply_row_transforms(rows, cfg.transforms, seed)
    parse_row, info = prepare_parser(rows, cfg.format, columns if columns is not None else cfg.columns,
                                     cfg.label_names or None, strict=cfg.on_bad_rows == "error")
    examples, report = policy.parse_all(rows, parse_row, read_errors=read_errors or ())
    return ExampleSet(examples, info, report if report.n_bad else None)


def _held_out_split(cfg: DataConfig) -> Optional[str]:
    if cfg.eval_split_name:
        return cfg.eval_split_name
    if is_builtin(cfg.train) and "test" in BUILTIN_DATASETS.get(cfg.train).splits:
        return "test"
    return None


def _eval_config(cfg: DataConfig) -> DataConfig:
    """The config ``data.eval`` is read with: a built-in other than ``data.train`` brings its own format
    (a DPO run on ``arith-pref`` evaluated on ``arith``), unless the user set ``data.format``."""
    if is_builtin(cfg.eval) and cfg.eval != cfg.train and is_builtin(cfg.train):
        own, train_format = BUILTIN_DATASETS.get(cfg.eval).row_format, BUILTIN_DATASETS.get(cfg.train).row_format
        if cfg.format == train_format and own != train_format:
            return dataclasses.replace(cfg, format=own)
    return cfg


def load_example_sets(cfg: DataConfig, seed: int, tokenizer: Any = None) -> tuple[ExampleSet, list[Any], list[str]]:
    """Train examples (mixed, de-duplicated, sampled), held-out examples, and notes for the user."""
    cfg = resolved_data_config(cfg)
    notes: list[str] = []
    if cfg.streaming:  # data.train is read while training (streaming.py); the held-out rows are data.eval's
        from tunesmith.data.streaming import streaming_held_out

        held_out = streaming_held_out(cfg, seed, tokenizer, notes)
        return ExampleSet([], FormatInfo(cfg.format)), held_out, notes
    train = read_examples(cfg, cfg.train, cfg.split, seed, "data.train", subset=cfg.subset, tokenizer=tokenizer)
    if train.bad_rows:
        notes.append(f"data.train: {train.bad_rows.summary()}")
    examples = train.examples
    held_out: list[Any] = []
    if cfg.eval:
        own_format = _eval_config(cfg).format
        if own_format != cfg.format:
            notes.append(f"data.eval: {cfg.eval} is read in its own format {own_format!r}, not data.format="
                         f"{cfg.format!r} (the format of data.train={cfg.train})")
        held_out = read_eval(cfg, seed, tokenizer, notes)
        _note_split(cfg.eval, seed, notes)
    elif _held_out_split(cfg):
        evaluated = read_examples(cfg, cfg.train, _held_out_split(cfg), seed, "data.train", subset=cfg.subset,
                                  tokenizer=tokenizer)
        held_out = _noted(evaluated, f"data.train (split {_held_out_split(cfg)!r})", notes)
        _note_split(cfg.train, seed, notes)
    elif cfg.eval_split > 0:
        order = list(range(len(examples)))
        random.Random(seed).shuffle(order)
        n_eval = max(1, int(round(len(examples) * cfg.eval_split)))
        if n_eval >= len(examples):
            raise DataError(f"data.eval_split: {cfg.eval_split} holds out {n_eval} of the {len(examples)} examples of "
                            "data.train, which leaves none to train on; use a smaller fraction (such as 0.1) or "
                            "give held-out data in data.eval")
        held_out = [examples[i] for i in sorted(order[:n_eval])]
        examples = [examples[i] for i in sorted(order[n_eval:])]
    removed = 0
    if cfg.dedupe:  # before mixing, so the mixture weights apply to distinct examples
        examples, removed = dedupe(examples, key_fn=_example_key)
    if cfg.mix:
        sets = [examples]
        for i, source in enumerate(cfg.mix):
            extra = _noted(read_examples(dataclasses.replace(cfg, format=source.format), source.train, source.split,
                                         seed, f"data.mix[{i}]", source.columns, source.subset, tokenizer),
                           f"data.mix[{i}]", notes)
            if cfg.dedupe:
                extra, n = dedupe(extra, key_fn=_example_key)
                removed += n
            sets.append(extra)
        # data.train has weight 1 and is used once in full; each mix source adds by its weight.
        examples = mix(sets, [1.0] + [s.weight for s in cfg.mix], None, seed)
        notes.append(f"data.mix: {len(examples)} examples from {len(sets)} datasets")
    if cfg.dedupe:
        notes.append(f"data.dedupe: removed {removed} duplicate examples")
    if cfg.max_samples is not None and len(examples) > cfg.max_samples:
        examples = sample(examples, cfg.max_samples, seed)
    add_system_prompt(examples, cfg.system_prompt)
    add_system_prompt(held_out, cfg.system_prompt)
    return ExampleSet(examples, train.info, train.bad_rows), held_out, notes


def read_eval(cfg: DataConfig, seed: int, tokenizer: Any, notes: list[str]) -> list[Any]:
    """The held-out examples of ``data.eval`` (a built-in's test split, else the named split or the
    whole file), with their system prompt: ``data.system_prompt`` (the user's, or the one a built-in
    ``data.train`` brings), else a built-in ``data.eval``'s own, so a built-in is asked as it asks
    whatever the run trained on (a run on a file, scored on ``arith``, gets arith's system prompt,
    as the base model does). ``cfg`` is resolved (`resolved_data_config`)."""
    split = "test" if is_builtin(cfg.eval) else (cfg.eval_split_name or "train")
    evaluated = read_examples(_eval_config(cfg), cfg.eval, split, seed, "data.eval", subset=cfg.subset,
                              tokenizer=tokenizer)
    held_out = _noted(evaluated, "data.eval", notes)
    own = BUILTIN_DATASETS.get(cfg.eval).system_prompt if is_builtin(cfg.eval) else None
    add_system_prompt(held_out, cfg.system_prompt or own)
    return held_out


def _note_split(spec: str, seed: int, notes: list[str]) -> None:
    """Say how a built-in dataset keeps its test split apart from training, where it says so, and
    that its test split does not follow a ``train.seed`` other than its held-out seed."""
    if is_builtin(spec):
        dataset = BUILTIN_DATASETS.get(spec)
        if dataset.split_note:
            notes.append(f"{spec} test split: {dataset.split_note}")
        if dataset.held_out_seed is not None and seed != dataset.held_out_seed:
            notes.append(f"{spec} test split: drawn with seed {dataset.held_out_seed} whatever train.seed is "
                         f"(train.seed={seed} draws the training rows), so runs are scored on the same rows")


def _noted(example_set: ExampleSet, label: str, notes: list[str]) -> list[Any]:
    """The examples of one split; its skipped bad rows (``data.on_bad_rows=skip``) go into ``notes``."""
    if example_set.bad_rows:
        notes.append(f"{label}: {example_set.bad_rows.summary()}")
    return example_set.examples


def _example_key(example: Any) -> str:
    data = dataclasses.asdict(example)
    data.pop("where", None)
    return repr(data)


def add_system_prompt(examples: list[Any], system_prompt: Optional[str]) -> None:
    """``data.system_prompt`` as the first turn of each conversation (of each prompt, for preference,
    unpaired and prompt-only examples) that has no system turn."""
    if not system_prompt:
        return
    for c in examples:
        turns = c.messages if isinstance(c, Conversation) else getattr(c, "prompt", None)
        if isinstance(turns, list) and turns and turns[0].role != "system":
            turns.insert(0, Message("system", system_prompt))


def _tokenize(tokenizer: Any, examples: list[Any], task: str, cfg: DataConfig, desc: str,
              preprocessor: Any = None) -> tuple[Any, TokenizeStats]:
    """(datasets.Dataset, stats): ``data.num_proc`` processes, or the custom ``preprocessor``."""
    import datasets

    settings = TokenizeSettings.from_config(cfg)
    if preprocessor is not None:
        if cfg.num_proc > 1:
            logger.warning("data.num_proc=%d is not used: a custom preprocessor tokenizes in this process",
                           cfg.num_proc)
        rows, stats = preprocessor(tokenizer, examples, task, settings)
        return datasets.Dataset.from_list(rows), stats
    table, stats = tokenize_to_table(tokenizer, examples, task, settings, cfg.num_proc, desc)
    return table_to_dataset(table), stats


def _cache_settings(cfg: DataConfig, seed: int, task: str) -> dict[str, Any]:
    name = cfg.template
    return settings_for_key(cfg, seed, task, None if name is None or name in BUILTIN_KINDS
                            else load_named_template(name))


def _user_code_reads_rows(cfg: DataConfig) -> bool:
    """Whether code outside tunesmith shapes the examples (a registered row transform in use, or a
    registered data format): file stamps cannot see an edit to that code, the examples' content can."""
    functions = check_row_transforms(cfg.transforms) + [f.parse for _, f in FORMATS.items()]
    return any(not str(getattr(fn, "__module__", "")).startswith("tunesmith.") for fn in functions)


def _stamps(cfg: DataConfig) -> Optional[list[Any]]:
    """Stamps of every file the config reads (train, eval, mix), or None when one source is not
    files, or when user code shapes the rows (then the examples' content is the key)."""
    if _user_code_reads_rows(cfg):
        return None
    specs = [("data.train", cfg.train)] + ([("data.eval", cfg.eval)] if cfg.eval else [])
    specs += [(f"data.mix[{i}].train", m.train) for i, m in enumerate(cfg.mix)]
    stamps = []
    for key, spec in specs:
        found = file_stamps(spec, key)
        if found is None:
            return None
        stamps.append(found)
    return stamps


def _bundle_from_entry(entry: tuple[Any, Optional[Any], dict[str, Any]], read: bool) -> "DataBundle":
    """The bundle of a cache entry; ``read``: the examples were read to make the key."""
    train, held, meta = entry
    info = FormatInfo(**meta["info"]) if meta["info"] else None
    skipped = "tokenizing skipped" if read else "reading and tokenizing skipped"
    notes = meta["notes"] + [f"Tokenizing train: loaded from the tokenized-data cache ({len(train)} examples; "
                             f"{skipped})"]
    eval_stats = TokenizeStats(**meta["eval_stats"]) if meta["eval_stats"] else None
    return DataBundle(train, held, TokenizeStats(**meta["train_stats"]), eval_stats, info, meta["label_names"],
                      notes, None, [example_from_dict(e) for e in meta["held_out"]])


def _packed(bundle: "DataBundle", cfg: DataConfig, task: str) -> "DataBundle":
    import datasets

    if bundle.info is not None:
        check_packing_for_kind(cfg.packing, bundle.info.kind)
    if cfg.packing != "pack":
        return bundle
    if task != Task.CAUSAL_LM:
        raise DataError(f"data.packing: 'pack' is for causal_lm models, not {task}; use group_by_length")
    rows, bundle.pack_stats = pack_examples(bundle.train.to_list(), cfg.max_length)
    bundle.train = datasets.Dataset.from_list(rows)
    bundle.notes.append(f"data.packing: {bundle.pack_stats.summary()}")
    return bundle


def build_datasets(cfg: DataConfig | dict[str, Any], tokenizer: Any, seed: int = 42,
                   task: str = "causal_lm", preprocessor: Any = None, rows_per_step: int = 1) -> DataBundle:
    """Tokenize train and held-out sets; errors if nothing trainable is left.

    ``cfg`` is a ``DataConfig`` or a dict of its keys, e.g.
    ``build_datasets({"train": "rows.jsonl", "max_length": 1024}, tokenizer)``. ``preprocessor``
    (a ``tunesmith.data.preprocessor.Preprocessor``) replaces ``tokenize_examples`` and the cache.
    With ``data.cache`` (see ``data/cache.py``) a second run with the same files, tokenizer and
    settings reads nothing but the cached, memory-mapped Arrow tables, and processes preparing
    the same data at once (the ranks of a multi-process run) take turns: one prepares, the others
    wait on a file lock, saying so every 30 s, and then read its cache entry.

    With ``data.streaming`` the bundle's ``train`` is a ``streaming.TokenStream`` that reads,
    tokenizes (and packs) ``data.train`` as its rows are drawn; ``rows_per_step`` (batch size ×
    accumulation) is how often it keeps its position for a checkpoint. ``data.eval`` is read in full.
    """
    if isinstance(cfg, dict):
        cfg = check_values_data(build_config(cfg, DataConfig, prefix="data."))
    resolved = resolved_data_config(cfg)
    if task == Task.CAUSAL_LM:
        check_stop_token(tokenizer)
    if resolved.streaming:
        from tunesmith.data.streaming import streamed_bundle

        return streamed_bundle(resolved, tokenizer, seed, task, preprocessor, rows_per_step)
    settings = _cache_settings(resolved, seed, task) if cfg.cache and preprocessor is None else None
    stamps = _stamps(resolved) if settings is not None else None
    if stamps is None:  # no cache, or built-in / generated / hub data, keyed by content after reading
        bundle = _prepare(cfg, resolved, tokenizer, seed, task, preprocessor, settings)
    else:  # files: the key is known before reading them
        bundle = _cached_or(data_key(tokenizer, settings, files=stamps),
                            lambda key: _prepare(cfg, resolved, tokenizer, seed, task, None, settings, key),
                            read=False)
    return _packed(bundle, resolved, task)


def _cached_or(key: str, prepare: Any, read: bool) -> DataBundle:
    """The cache entry ``key``, else ``prepare(key)``, which writes it; one process at a time."""
    with entry_lock(key):
        entry = load_entry(key)
        return _bundle_from_entry(entry, read) if entry is not None else prepare(key)


def _prepare(cfg: DataConfig, resolved: DataConfig, tokenizer: Any, seed: int, task: str, preprocessor: Any,
             settings: Optional[dict[str, Any]], key: Optional[str] = None) -> DataBundle:
    """Read, tokenize and (with ``settings``: caching on) write the cache entry, the garbage
    collector paused (``gc_pause.py``: it would spend as long as parsing does on finding nothing)."""
    with paused_gc():
        train_set, held_out, notes = load_example_sets(cfg, seed, tokenizer)
        if settings is not None and key is None:  # built-in, generated or hub data: the content decides the key
            content_key = data_key(tokenizer, settings, examples=train_set.examples + held_out)
            return _cached_or(content_key, lambda k: _tokenized(train_set, held_out, notes, tokenizer, resolved,
                                                                task, None, k), read=True)
        return _tokenized(train_set, held_out, notes, tokenizer, resolved, task, preprocessor, key)


def _tokenized(train_set: ExampleSet, held_out: list[Any], notes: list[str], tokenizer: Any, cfg: DataConfig,
               task: str, preprocessor: Any, key: Optional[str]) -> DataBundle:
    reading_notes = list(notes)
    check_packing_for_kind(cfg.packing, train_set.info.kind)  # before the work of tokenizing
    train_ds, train_stats = _tokenize(tokenizer, train_set.examples, task, cfg, "Tokenizing train", preprocessor)
    if not len(train_ds):
        raise DataError(
            f"data.train: none of the {len(train_set.examples)} examples can be trained: "
            f"{train_stats.dropped_too_long} are longer than data.max_length={cfg.max_length} tokens "
            f"(data.truncation={cfg.truncation!r}), {train_stats.dropped_too_short} are shorter than "
            f"data.min_length={cfg.min_length}, and {train_stats.dropped_no_trained_token} have no trained "
            f"token under data.loss_on={cfg.loss_on!r}. First ones: {'; '.join(train_stats.examples_dropped[:3])}"
        )
    eval_ds, eval_stats = None, None
    if held_out:
        eval_ds, eval_stats = _tokenize(tokenizer, held_out, task, cfg, "Tokenizing eval", preprocessor)
        eval_ds = eval_ds if len(eval_ds) else None
    if key is not None:
        meta = {"train_stats": dataclasses.asdict(train_stats),
                "eval_stats": dataclasses.asdict(eval_stats) if eval_stats else None,
                "info": dataclasses.asdict(train_set.info) if train_set.info else None,
                "label_names": list(train_set.info.label_names or []), "notes": reading_notes,
                "held_out": [example_to_dict(e) for e in held_out]}
        mapped = save_entry(key, train_ds, eval_ds, meta)
        if mapped is not None:  # read back memory-mapped: the tables in memory can go
            train_ds, eval_ds = mapped
    return DataBundle(train_ds, eval_ds, train_stats, eval_stats, train_set.info,
                      list(train_set.info.label_names or []), notes, None, held_out)


def load_conversations(cfg: DataConfig, seed: int, tokenizer: Any = None) -> tuple[list[Any], list[Any]]:
    """Train and held-out canonical examples (kept for callers that only need examples)."""
    train, held_out, _ = load_example_sets(cfg, seed, tokenizer)
    return train.examples, held_out


def eval_conversations(held_out: list[Any], limit: int) -> list[Conversation]:
    """Up to ``limit`` held-out conversations, each with a reference answer (for exact match).

    Preference and unpaired examples count as ``Conversation(prompt + completion, reference)`` (the
    chosen completion; an undesirable one as the prompt alone), prompt examples as
    ``Conversation(prompt, reference)`` (evaluation asks ``prompt_messages()`` and compares the
    answer with ``reference``); those without a reference answer are left out. Unpaired answers
    to the same prompt are one question (see ``one_answer_per_prompt``).
    """
    conversations = [c for c in map(as_eval_conversation, one_answer_per_prompt(held_out)) if c is not None]
    for c in conversations:
        if c.reference is None:
            c.reference = c.last_answer()
    return conversations[:limit]


def load_eval_conversations(cfg: DataConfig, seed: int, limit: int) -> list[Conversation]:
    """Read the held-out set of ``cfg`` and return ``eval_conversations`` of it."""
    _, held_out = load_conversations(cfg, seed)
    return eval_conversations(held_out, limit)
