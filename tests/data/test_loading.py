"""Device-aware DataLoaders: settings per device (no GPU needed), seeded order, samplers."""

import random

import pytest
import torch
from torch.utils.data import RandomSampler, SequentialSampler

from tunesmith.data.collators import PackedCollator, PaddingCollator
from tunesmith.data.loading import (
    LengthGroupedSampler,
    build_dataloader,
    example_lengths,
    length_grouped_sampler,
    loader_settings,
    to_device,
)
from tunesmith.data.packing import pack_examples, padding_fraction
from tunesmith.errors import ConfigError, DataError


def rows(n=64, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ids = [rng.randint(1, 50) for _ in range(rng.randint(1, 40))]
        out.append({"input_ids": ids, "labels": ids})
    return out


@pytest.mark.parametrize("device,workers,pin,persistent,prefetch", [
    ("cpu", 0, False, False, None),
    ("mps", 0, False, False, None),
    ("cuda", None, True, True, 2),  # None: depends on the CPU count, checked below
    ("cuda:1", None, True, True, 2),
])
def test_dataloader_settings_follow_the_device(device, workers, pin, persistent, prefetch):
    loader = build_dataloader(rows(), PaddingCollator(0), batch_size=4, device=device, seed=0)
    assert loader.pin_memory is pin
    assert loader.persistent_workers is persistent
    assert loader.prefetch_factor == prefetch
    if workers is None:
        assert 1 <= loader.num_workers <= 4
    else:
        assert loader.num_workers == workers
    assert isinstance(loader.sampler, RandomSampler) and loader.generator is loader.sampler.generator


def test_num_workers_can_be_overridden():
    assert loader_settings("cuda", num_workers=0).persistent_workers is False
    assert loader_settings("cuda", num_workers=0).prefetch_factor is None
    settings = loader_settings("cpu", num_workers=2)
    assert settings.num_workers == 2 and settings.prefetch_factor == 2 and not settings.pin_memory
    with pytest.raises(ConfigError, match="model.device"):
        loader_settings("auto")
    with pytest.raises(ConfigError, match="num_workers"):
        loader_settings("cpu", num_workers=-1)


def batches_of(loader):
    return [b["input_ids"].tolist() for b in loader]


def test_shuffling_is_seeded():
    data = rows()
    first = batches_of(build_dataloader(data, PaddingCollator(0), 8, "cpu", seed=3))
    assert first == batches_of(build_dataloader(data, PaddingCollator(0), 8, "cpu", seed=3))
    assert first != batches_of(build_dataloader(data, PaddingCollator(0), 8, "cpu", seed=4))
    ordered = build_dataloader(data, PaddingCollator(0), 8, "cpu", shuffle=False)
    assert isinstance(ordered.sampler, SequentialSampler)
    assert next(iter(ordered))["input_ids"][0, : len(data[0]["input_ids"])].tolist() == data[0]["input_ids"]


def test_group_by_length_uses_the_length_sampler_and_pads_less():
    data = rows(400)
    grouped = build_dataloader(data, PaddingCollator(0), 8, "cpu", seed=0, packing="group_by_length")
    plain = build_dataloader(data, PaddingCollator(0), 8, "cpu", seed=0)
    assert isinstance(grouped.sampler, LengthGroupedSampler)

    def pad_share(loader):
        masks = [b["attention_mask"] for b in loader]
        return 1 - sum(m.sum().item() for m in masks) / sum(m.numel() for m in masks)

    assert pad_share(grouped) < pad_share(plain) / 2
    assert sum(len(b) for b in batches_of(grouped)) == 400


def test_length_grouped_sampler_is_deterministic_and_reshuffles_per_epoch():
    data = rows(100)
    sampler = length_grouped_sampler(data, batch_size=4, seed=7)
    assert len(sampler) == 100 and sampler.lengths == example_lengths(data)
    epoch0, epoch1 = list(sampler), list(sampler)
    assert sorted(epoch0) == list(range(100)) and epoch0 != epoch1
    sampler.set_epoch(0)
    assert list(sampler) == epoch0
    assert list(LengthGroupedSampler(sampler.lengths, 4, seed=7)) == epoch0
    assert padding_fraction(sampler.lengths, 4, epoch0) < padding_fraction(sampler.lengths, 4)


def test_example_lengths_reads_a_datasets_column():
    from datasets import Dataset

    data = rows(5)
    assert example_lengths(Dataset.from_list(data)) == [len(r["input_ids"]) for r in data]


def test_pack_mode_takes_blocks_and_refuses_plain_examples():
    data = rows(50)
    with pytest.raises(DataError, match="pack_examples"):
        build_dataloader(data, PackedCollator(0), 2, "cpu", packing="pack")
    blocks, stats = pack_examples(data, max_length=64)
    loader = build_dataloader(blocks, PackedCollator(0), 2, "cpu", seed=0, packing="pack")
    # An example starts wherever a position restarts on a real token (pad segments hold pad id 0).
    seen = sum(int(((b["position_ids"] == 0) & (b["input_ids"] != 0)).sum()) for b in loader)
    assert seen == 50 and stats.blocks < 50
    with pytest.raises(ConfigError, match="data.packing"):
        build_dataloader(data, PaddingCollator(0), 2, "cpu", packing="tight")


def test_to_device_moves_tensors_and_passes_the_rest():
    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long), "use_cache": False, "extra": [torch.zeros(1)]}
    moved = to_device(batch, "cpu")
    assert moved["use_cache"] is False and moved["input_ids"].device.type == "cpu"
    assert isinstance(moved["extra"], list) and moved["extra"][0].device.type == "cpu"
