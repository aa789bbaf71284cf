"""Collators: exact padded tensors, the registry, and packed rows that keep examples apart."""

from types import SimpleNamespace

import pytest
import torch

from tunesmith.data.collators import (
    COLLATORS,
    ClassificationCollator,
    PackedCollator,
    PaddingCollator,
    Seq2SeqCollator,
    pad_multiple_for_device,
)
from tunesmith.api.choices.batching import build_collator, resolve_collator_name
from tunesmith.data.packing import pack_examples
from tunesmith.errors import ConfigError, DataError

TOK = SimpleNamespace(pad_token_id=0, eos_token_id=2)


def as_lists(batch):
    return {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


# --- padding collators -------------------------------------------------------------------------

def test_causal_lm_pads_right_with_masked_labels():
    batch = as_lists(PaddingCollator(pad_token_id=0)([
        {"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
        {"input_ids": [5], "labels": [5]},
    ]))
    assert batch == {
        "input_ids": [[5, 6, 7], [5, 0, 0]],
        "attention_mask": [[1, 1, 1], [1, 0, 0]],
        "labels": [[-100, 6, 7], [5, -100, -100]],
    }


def test_causal_lm_pads_left_for_generation():
    batch = as_lists(PaddingCollator(pad_token_id=9, padding_side="left")([
        {"input_ids": [5, 6, 7], "labels": [5, 6, 7]},
        {"input_ids": [5], "labels": [5]},
    ]))
    assert batch["input_ids"] == [[5, 6, 7], [9, 9, 5]]
    assert batch["attention_mask"] == [[1, 1, 1], [0, 0, 1]]
    assert batch["labels"] == [[5, 6, 7], [-100, -100, 5]]


def test_padding_side_is_checked():
    with pytest.raises(ConfigError, match="padding_side"):
        PaddingCollator(pad_token_id=0, padding_side="middle")
    with pytest.raises(ConfigError, match="packed"):
        PackedCollator(pad_token_id=0, padding_side="left")


def test_seq2seq_pads_sources_with_pad_id_and_targets_with_ignore_index():
    batch = as_lists(Seq2SeqCollator(pad_token_id=0)([
        {"input_ids": [4, 5, 6], "labels": [7]},
        {"input_ids": [4], "labels": [8, 9]},
    ]))
    assert batch == {
        "input_ids": [[4, 5, 6], [4, 0, 0]],
        "attention_mask": [[1, 1, 1], [1, 0, 0]],
        "labels": [[7, -100], [8, 9]],
    }
    assert "decoder_input_ids" not in batch  # the model shifts labels itself


def test_seq2seq_left_pads_only_the_encoder_input():
    batch = as_lists(Seq2SeqCollator(pad_token_id=0, padding_side="left")([
        {"input_ids": [4, 5], "labels": [7]}, {"input_ids": [4], "labels": [8, 9]}]))
    assert batch["input_ids"] == [[4, 5], [0, 4]]
    assert batch["labels"] == [[7, -100], [8, 9]]


def test_classification_labels_are_one_long_per_example():
    batch = ClassificationCollator(pad_token_id=0)([
        {"input_ids": [4, 5], "token_type_ids": [0, 1], "label": 1},
        {"input_ids": [4], "token_type_ids": [0], "label": 0},
    ])
    assert as_lists(batch) == {
        "input_ids": [[4, 5], [4, 0]],
        "attention_mask": [[1, 1], [1, 0]],
        "token_type_ids": [[0, 1], [0, 0]],
        "labels": [1, 0],
    }
    assert batch["labels"].dtype == torch.long and batch["labels"].dim() == 1
    assert ClassificationCollator(0)([{"input_ids": [3], "labels": 2}])["labels"].tolist() == [2]


# --- packed collator ---------------------------------------------------------------------------

def test_packed_concatenates_examples_with_restarting_positions_and_no_mask():
    batch = PackedCollator(pad_token_id=0)([
        {"input_ids": [5, 6, 7], "labels": [5, 6, 7]},
        {"input_ids": [8, 9], "labels": [-100, 9]},
    ])
    assert as_lists(batch) == {
        "input_ids": [[5, 6, 7, 8, 9]],
        "labels": [[-100, 6, 7, -100, 9]],
        "position_ids": [[0, 1, 2, 0, 1]],
        "use_cache": False,
    }


def test_packed_blocks_pad_rows_with_a_separate_pad_segment():
    blocks = [
        {"input_ids": [5, 6, 7, 8], "labels": [-100, 6, -100, 8], "position_ids": [0, 1, 0, 1], "seq_lengths": [2, 2]},
        {"input_ids": [3, 4], "labels": [-100, 4], "position_ids": [0, 1], "seq_lengths": [2]},
    ]
    batch = as_lists(PackedCollator(pad_token_id=0)(blocks))
    assert batch["input_ids"] == [[5, 6, 7, 8], [3, 4, 0, 0]]
    assert batch["labels"] == [[-100, 6, -100, 8], [-100, 4, -100, -100]]
    assert batch["position_ids"] == [[0, 1, 0, 1], [0, 1, 0, 1]]
    assert "attention_mask" not in batch and "seq_lengths" not in batch


def test_packed_refuses_a_mix_of_blocks_and_examples():
    with pytest.raises(DataError, match="mixes"):
        PackedCollator(0)([{"input_ids": [1], "labels": [1], "position_ids": [0]}, {"input_ids": [2], "labels": [2]}])


# --- registry and device padding ---------------------------------------------------------------

def test_registry_lists_every_collator():
    assert COLLATORS.names() == ["causal_lm", "classification", "packed", "seq2seq"]
    with pytest.raises(ConfigError, match="data.collator.*Did you mean 'packed'"):
        resolve_collator_name("paked", "causal_lm")


@pytest.mark.parametrize("task,packing,expected", [
    ("causal_lm", "none", "causal_lm"),
    ("causal_lm", "group_by_length", "causal_lm"),
    ("causal_lm", "pack", "packed"),
    ("causal_lm", "padding_free", "packed"),
    ("causal_lm", "auto", "causal_lm"),  # an unknown architecture pads
    ("seq2seq", "none", "seq2seq"),
    ("seq2seq", "auto", "seq2seq"),
    ("sequence_classification", "group_by_length", "classification"),
])
def test_auto_picks_by_task_and_packing(task, packing, expected):
    assert resolve_collator_name("auto", task, packing) == expected


def test_auto_packing_is_padding_free_for_known_causal_lm_architectures():
    from tunesmith.api.choices.batching import resolve_packing

    assert resolve_collator_name("auto", "causal_lm", "auto", "llama") == "packed"
    assert resolve_collator_name("auto", "causal_lm", "auto", "gpt2") == "causal_lm"
    assert resolve_packing("auto", "causal_lm", "qwen2") == "padding_free"
    assert resolve_packing("auto", "sequence_classification", "llama") == "none"
    assert resolve_packing("group_by_length", "causal_lm", "llama") == "group_by_length"
    with pytest.raises(ConfigError, match="data.packing: 'padding_free' is for causal_lm models"):
        resolve_packing("padding_free", "sequence_classification")


def test_inconsistent_choices_fail_with_the_key():
    with pytest.raises(ConfigError, match="data.collator.*attend"):
        resolve_collator_name("causal_lm", "causal_lm", "pack")
    with pytest.raises(ConfigError, match="data.packing"):
        resolve_collator_name("auto", "seq2seq", "pack")
    with pytest.raises(ConfigError, match="data.packing.*Allowed"):
        resolve_collator_name("auto", "causal_lm", "tight")
    with pytest.raises(ConfigError, match="model.task"):
        resolve_collator_name("auto", "auto")


def test_cuda_pads_to_a_multiple_of_8_and_cpu_does_not():
    assert pad_multiple_for_device("cuda:1") == 8 and pad_multiple_for_device(torch.device("cpu")) is None
    rows = [{"input_ids": list(range(1, 10)), "labels": list(range(1, 10))}]  # 9 tokens
    assert build_collator("auto", "causal_lm", TOK, "none", "cuda")(rows)["input_ids"].shape == (1, 16)
    assert build_collator("auto", "causal_lm", TOK, "none", "cpu")(rows)["input_ids"].shape == (1, 9)
    packed = build_collator("auto", "causal_lm", TOK, "pack", "cuda")(rows + rows)  # 18 tokens in one row
    assert packed["input_ids"].shape == (1, 24)
    assert packed["position_ids"][0, 18:].tolist() == list(range(6))
    s2s = build_collator("seq2seq", "seq2seq", TOK, "none", "cuda")([{"input_ids": [1], "labels": [2, 3]}])
    assert s2s["input_ids"].shape == (1, 8) and s2s["labels"].shape == (1, 8)


def test_pad_id_falls_back_to_eos_and_is_required():
    collator = build_collator("auto", "causal_lm", SimpleNamespace(pad_token_id=None, eos_token_id=2))
    assert collator.pad_token_id == 2 and collator.padding_side == "right"
    with pytest.raises(Exception, match="pad_token"):
        build_collator("auto", "causal_lm", SimpleNamespace(pad_token_id=None, eos_token_id=None))


# --- packed rows through a real model: no attention across examples ------------------------------

@pytest.fixture(scope="module", params=["sdpa", "eager"])
def tiny_llama(request):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=64, max_position_embeddings=64,
                         attn_implementation=request.param)
    model = LlamaForCausalLM(config).eval()
    # use_cache stays at its default (True), as outside a Trainer: the collator must cope.
    assert model.config._attn_implementation == request.param and model.config.use_cache
    return model


A = {"input_ids": [3, 14, 15, 9, 26, 5], "labels": [-100, -100, 15, 9, 26, 5]}
B = {"input_ids": [7, 11, 13, 17], "labels": [-100, 11, 13, 17]}
C = {"input_ids": [21, 22, 23, 24, 25], "labels": [21, 22, 23, 24, 25]}


def alone(model, example):
    with torch.no_grad():
        return model(input_ids=torch.tensor([example["input_ids"]])).logits[0]


def test_packed_row_gives_each_example_the_logits_it_has_alone(tiny_llama):
    batch = PackedCollator(pad_token_id=0)([A, B])
    with torch.no_grad():
        packed = tiny_llama(**batch).logits[0]
    torch.testing.assert_close(packed[:6], alone(tiny_llama, A), atol=1e-5, rtol=0)
    torch.testing.assert_close(packed[6:], alone(tiny_llama, B), atol=1e-5, rtol=0)

    # The check can see contamination: without restarting positions B attends to A.
    with torch.no_grad():
        naive = tiny_llama(input_ids=batch["input_ids"], use_cache=False).logits[0]
    assert (naive[6:] - alone(tiny_llama, B)).abs().max() > 1e-3


def test_packed_blocks_with_row_padding_match_examples_alone(tiny_llama):
    blocks, stats = pack_examples([A, B, C], max_length=10)  # [A, B] and [C]
    assert stats.blocks == 2 and [b["seq_lengths"] for b in blocks] == [[6, 4], [5]]
    batch = PackedCollator(pad_token_id=0, pad_to_multiple_of=8)(blocks)  # rows of 16, like on CUDA
    assert batch["input_ids"].shape == (2, 16)
    with torch.no_grad():
        logits = tiny_llama(**batch).logits
    torch.testing.assert_close(logits[0, :6], alone(tiny_llama, A), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[0, 6:10], alone(tiny_llama, B), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[1, :5], alone(tiny_llama, C), atol=1e-5, rtol=0)


def test_packed_loss_is_the_token_weighted_loss_of_the_examples(tiny_llama):
    examples = [A, B, C]
    with torch.no_grad():
        packed_loss = tiny_llama(**PackedCollator(pad_token_id=0)(examples)).loss
        total = weight = 0.0
        for ex in examples:
            loss = tiny_llama(input_ids=torch.tensor([ex["input_ids"]]), labels=torch.tensor([ex["labels"]])).loss
            n = sum(1 for t in ex["labels"][1:] if t != -100)  # targets after the model's shift
            total += loss.item() * n
            weight += n
    assert packed_loss.item() == pytest.approx(total / weight, abs=1e-5)


def test_a_collator_that_takes_a_tokenizer_is_built_with_it(smol_tokenizer):
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding

    from tunesmith.data.collators import COLLATORS, build_collator, register_collator

    register_collator("hf_padding", overwrite=True)(DataCollatorWithPadding)
    register_collator("hf_seq2seq", overwrite=True)(DataCollatorForSeq2Seq)
    try:
        collator = build_collator("hf_padding", "sequence_classification", smol_tokenizer, device="cuda")
        assert isinstance(collator, DataCollatorWithPadding) and collator.tokenizer is smol_tokenizer
        assert collator.pad_to_multiple_of == 8  # chosen for the device, as for tunesmith's collators
        batch = build_collator("hf_seq2seq", "causal_lm", smol_tokenizer, "none")(
            [{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}, {"input_ids": [8], "labels": [8]}])
        assert batch["labels"].tolist() == [[5, 6, 7], [8, -100, -100]]
        with pytest.raises(ConfigError, match="'tokenizer' is passed by tunesmith"):
            build_collator("hf_padding", "sequence_classification", smol_tokenizer, args={"tokenizer": None})
    finally:
        COLLATORS.remove("hf_padding")
        COLLATORS.remove("hf_seq2seq")
