"""Device-aware DataLoaders: workers, pinned memory and sampling chosen for where the model runs.

Importing this module imports torch; import it inside functions on paths like ``tunesmith --help``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, RandomSampler, Sampler, SequentialSampler

from tunesmith.data.packing import PACKINGS, group_by_length_order
from tunesmith.errors import ConfigError, DataError


@dataclass(frozen=True)
class LoaderSettings:
    """DataLoader keyword arguments that depend on the device."""

    num_workers: int
    pin_memory: bool
    persistent_workers: bool
    prefetch_factor: int | None


def device_type(device: Any) -> str:
    """``"cuda:1"`` -> ``"cuda"``; ``torch.device("mps")`` -> ``"mps"``; ``"cpu"`` -> ``"cpu"``."""
    kind = str(device).split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"model.device: a DataLoader needs a resolved device (cpu, cuda, cuda:N, mps), "
                          f"got {device!r}")
    return kind


def loader_settings(device: Any, num_workers: int | None = None) -> LoaderSettings:
    """Worker and memory settings for a device.

    ``loader_settings("cpu")`` -> 0 workers, no pinning: the rows are already token ids, so
    collating in the main process is cheaper than forking workers and pickling batches back.
    ``loader_settings("cuda")`` -> pinned memory (faster, asynchronous host-to-GPU copies) and up
    to 4 persistent workers, each keeping 2 batches ready, so collation hides behind GPU steps.
    ``loader_settings("mps")`` -> 0 workers, no pinning (pinned memory is a CUDA feature, and
    macOS spawns rather than forks workers, which costs seconds per worker).
    """
    kind = device_type(device)
    if num_workers is None:
        num_workers = min(4, max(1, (os.cpu_count() or 2) - 1)) if kind == "cuda" else 0
    if num_workers < 0:
        raise ConfigError(f"num_workers: must be 0 or more, got {num_workers}")
    workers = num_workers > 0
    return LoaderSettings(
        num_workers=num_workers,
        pin_memory=kind == "cuda",
        persistent_workers=workers and kind == "cuda",  # re-forking every epoch stalls the GPU
        prefetch_factor=2 if workers else None,  # DataLoader refuses a prefetch_factor without workers
    )


def example_lengths(dataset: Any) -> list[int]:
    """Token count of every row: ``[{"input_ids": [1, 2]}, {"input_ids": [3]}]`` -> ``[2, 1]``."""
    names = getattr(dataset, "column_names", None)
    if names and "input_ids" in names:  # a datasets.Dataset: read one column, not every row
        return [len(ids) for ids in dataset["input_ids"]]
    return [len(row["input_ids"]) for row in dataset]


class LengthGroupedSampler(Sampler[int]):
    """Yields indices so consecutive batches hold examples of similar length.

    Deterministic by ``seed``; each pass (or `set_epoch`) reshuffles with ``seed + epoch``. Works
    as a DataLoader ``sampler`` and from a transformers Trainer (override ``_get_train_sampler``
    to return ``length_grouped_sampler(dataset, batch_size, seed)``).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, mega_batch_size: int = 50) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.mega_batch_size = mega_batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle differently each epoch (the Trainer calls this)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        order = group_by_length_order(self.lengths, self.batch_size, self.seed + self.epoch, self.mega_batch_size)
        self.epoch += 1  # the next pass is a new epoch even when nobody calls set_epoch
        return iter(order)

    def __len__(self) -> int:
        return len(self.lengths)


def length_grouped_sampler(dataset: Any, batch_size: int, seed: int = 0) -> LengthGroupedSampler:
    """A `LengthGroupedSampler` over a tokenized dataset (rows with ``input_ids``)."""
    return LengthGroupedSampler(example_lengths(dataset), batch_size, seed)


def build_dataloader(
    dataset: Any,
    collator: Callable[[list[dict[str, Any]]], dict[str, Any]],
    batch_size: int,
    device: Any,
    shuffle: bool = True,
    seed: int = 0,
    packing: str = "none",
    num_workers: int | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader whose workers, pinning and sampling follow the device and ``data.packing``.

    A ``torch.utils.data.IterableDataset`` (a ``data.streaming`` stream) is read in order, in this
    process. ``packing="group_by_length"`` (with shuffle) draws batches of similar length; ``"pack"``
    expects blocks from `tunesmith.data.packing.pack_examples` and a packed collator; ``"none"``
    shuffles uniformly. Shuffling uses a generator seeded with ``seed``, so two runs with the
    same seed see the same batches.

    Example:
        ``build_dataloader(rows, PaddingCollator(0), 8, "cuda")`` -> a DataLoader with
        ``pin_memory=True``, 4 persistent workers and a seeded random sampler.
    """
    if packing not in PACKINGS:
        raise ConfigError(f"data.packing: unknown value {packing!r}. Allowed: {', '.join(PACKINGS)}")
    if batch_size <= 0:
        raise ConfigError(f"train.batch_size: must be positive, got {batch_size}")
    if isinstance(dataset, torch.utils.data.IterableDataset):
        # A stream (data.streaming) orders its own rows (data.shuffle_buffer) and is read in this process.
        return DataLoader(dataset, batch_size=batch_size, collate_fn=collator, drop_last=drop_last,
                          pin_memory=loader_settings(device, 0).pin_memory)
    if packing == "pack" and len(dataset) and "position_ids" not in dataset[0]:
        raise DataError("data.packing=pack: the dataset holds plain examples; pack them first with "
                        "tunesmith.data.packing.pack_examples (rows need position_ids)")
    settings = loader_settings(device, num_workers)
    generator = torch.Generator().manual_seed(seed)
    if shuffle and packing == "group_by_length":
        sampler: Sampler[int] = LengthGroupedSampler(example_lengths(dataset), batch_size, seed)
    elif shuffle:
        sampler = RandomSampler(dataset, generator=generator)
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collator,
        drop_last=drop_last,
        generator=generator,  # also seeds each worker's base seed
        num_workers=settings.num_workers,
        pin_memory=settings.pin_memory,
        persistent_workers=settings.persistent_workers,
        prefetch_factor=settings.prefetch_factor,
    )


def to_device(batch: Any, device: Any) -> Any:
    """Move every tensor in a (nested) batch to ``device``; other values pass through.

    Copies from pinned memory are asynchronous (``non_blocking``), so the next batch can be
    collated while this one is copied. ``{"input_ids": tensor, "use_cache": False}`` ->
    the same dict with ``input_ids`` on ``device``.
    """
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=batch.is_pinned())
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
