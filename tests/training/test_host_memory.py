"""``train.memory_trim``: checked early, resolved per device and C library, and the callback trims
after every optimizer step of a real Trainer run (and not at all when off)."""

import platform

import pytest

from tunesmith.config import load_config
from tunesmith.errors import ConfigError
from tunesmith.training import host_memory
from tunesmith.api.choices.training import plan_memory_trim
from tunesmith.training.host_memory import MemoryTrim, apply_memory_trim, memory_record

GLIBC = platform.libc_ver()[0] == "glibc"


def test_bad_value_fails_before_loading():
    with pytest.raises(ConfigError, match="train.memory_trim: 'yes' is not allowed.*auto, on, off"):
        load_config(overrides=["train.memory_trim=yes"])
    assert load_config().train.memory_trim == "auto"
    assert load_config(overrides=["train.memory_trim=off"]).train.memory_trim == "off"


def test_off_never_trims_and_auto_trims_on_a_cpu_only():
    off = plan_memory_trim("off", "cpu")
    assert not off.enabled and off.reason == "train.memory_trim=off"
    gpu = plan_memory_trim("auto", "cuda:0")
    assert not gpu.enabled and "on a CPU only" in gpu.reason and "cuda:0" in gpu.reason
    cpu, forced = plan_memory_trim("auto", "cpu"), plan_memory_trim("on", "cuda")
    assert cpu.enabled == forced.enabled == GLIBC
    assert cpu.describe().startswith("Memory trim: " + ("on" if GLIBC else "off"))


def test_without_glibc_it_is_off_with_the_reason(monkeypatch):
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    for setting in ("auto", "on"):
        plan = plan_memory_trim(setting, "cpu")
        assert not plan.enabled
        assert plan.reason == f"train.memory_trim={setting} has no effect: the C library here is not glibc (Darwin)"
    with pytest.raises(RuntimeError, match="not glibc"):
        MemoryTrim()


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc_trim exists on glibc only")
def test_glibc_malloc_trim_is_callable():
    trim, note = host_memory.glibc_malloc_trim()
    assert note.startswith("glibc ") and trim(0) in (0, 1)


class FakeTrim:
    def __init__(self, released=1):
        self.pads, self.released = [], released

    def __call__(self, pad):
        self.pads.append(pad)
        return self.released


def test_the_callback_trims_after_every_optimizer_step_of_a_run(tiny_llama_dir, smol_tokenizer, tmp_path,
                                                                 monkeypatch):
    from transformers import AutoModelForCausalLM, Trainer

    from tunesmith.data.collators import PackedCollator
    from tunesmith.api.choices.training import build_training_args

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    rows = [{"input_ids": smol_tokenizer("add " * (i + 2))["input_ids"]} for i in range(12)]
    rows = [{**r, "labels": list(r["input_ids"])} for r in rows]
    runs = {}
    for setting in ("on", "off"):
        fake = FakeTrim()
        monkeypatch.setattr(host_memory, "glibc_malloc_trim", lambda: (fake, "glibc 9.99"))
        cfg = load_config(overrides=["train.batch_size=2", "train.grad_accum=2", "train.max_steps=3",
                                     "train.precision=fp32", f"train.memory_trim={setting}"])
        args = build_training_args(cfg, tmp_path / setting, "cpu", "fp32", False)
        trainer = Trainer(model=model, args=args, train_dataset=rows,
                          data_collator=PackedCollator(pad_token_id=smol_tokenizer.pad_token_id))
        record = apply_memory_trim(trainer, plan_memory_trim(cfg.train.memory_trim, "cpu"))
        trainer.train()
        runs[setting] = (fake.pads, memory_record(trainer, record), trainer.state.global_step)
    pads, record, steps = runs["on"]
    assert steps == 3 and pads == [0] * (1 + 3)  # once at the start, then after each of 3 optimizer steps
    assert record["trimmed"] and record["reason"].startswith("glibc 9.99 malloc_trim after every optimizer step")
    assert record["trims"] == 4 and record["trims_that_released"] == 4 and record["trim_seconds"] >= 0
    pads, record, steps = runs["off"]
    assert steps == 3 and pads == []
    assert record == {"memory_trim": "off", "trimmed": False, "reason": "train.memory_trim=off"}


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc_trim exists on glibc only")
def test_apply_adds_a_glibc_callback_when_enabled():
    class FakeTrainer:
        def __init__(self):
            self.callbacks = []
            self.callback_handler = self

        def add_callback(self, callback):
            self.callbacks.append(callback)

    trainer = FakeTrainer()
    record = apply_memory_trim(trainer, plan_memory_trim("auto", "cpu"))
    assert record["trimmed"] and record["memory_trim"] == "auto" and "malloc_trim" in record["reason"]
    (callback,) = trainer.callbacks
    callback.on_step_end(None, None, None)
    assert memory_record(trainer, record)["trims"] == 1


def test_kernel_cache_size_is_checked_and_set_before_loading(monkeypatch):
    with pytest.raises(ConfigError, match="train.cpu_kernel_cache: -1 is not allowed"):
        load_config(overrides=["train.cpu_kernel_cache=-1"])
    assert load_config().train.cpu_kernel_cache == 16
    monkeypatch.setattr(host_memory, "_applied", {})
    for name in host_memory.KERNEL_CACHE_VARIABLES:
        monkeypatch.setenv(name, "1024")  # the user's environment does not win over the config, and is told so
    note = host_memory.limit_kernel_caches(0)
    assert note == ("train.cpu_kernel_cache=0 replaces LRU_CACHE_CAPACITY=1024, ONEDNN_PRIMITIVE_CACHE_CAPACITY=1024 "
                    "from the environment; set train.cpu_kernel_cache to the size you want instead")
    assert (host_memory.os.environ["LRU_CACHE_CAPACITY"], host_memory.os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"]) \
        == ("1", "0")
    assert host_memory.limit_kernel_caches(0) is None  # the same size again: nothing to say
    note = host_memory.limit_kernel_caches(64)
    assert note.startswith("train.cpu_kernel_cache=64: this Python process already trained with 0 and keeps 0")
