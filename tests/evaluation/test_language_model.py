import math
import random

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset

from tunesmith.data.collators import PackedCollator, PaddingCollator
from tunesmith.errors import DataError
from tunesmith.evaluation.language_model import evaluate_perplexity


@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    # A wide initializer spreads the token losses; with the default (0.02) every loss is about
    # log(64), and token-weighted and batch-averaged means would be nearly equal by accident.
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         initializer_range=0.5)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def rows():
    """Very unequal lengths, so batches hold very different numbers of scored tokens."""
    rng = random.Random(0)
    out = []
    for n in [30, 4, 3, 25, 5, 28, 3]:
        ids = [rng.randint(1, 63) for _ in range(n)]
        prompt = rng.randint(0, n // 3)  # a prompt that is not trained, as in SFT rows
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def direct(model, rows):
    """Summed next-token loss over every scored token, each row alone and unpadded."""
    total, tokens = 0.0, 0
    with torch.no_grad():
        for r in rows:
            logits = model(input_ids=torch.tensor([r["input_ids"]])).logits[0, :-1]
            targets = torch.tensor(r["labels"][1:])
            total += F.cross_entropy(logits, targets, ignore_index=-100, reduction="sum").item()
            tokens += int((targets != -100).sum())
    return total / tokens, tokens


def test_loss_is_token_weighted_over_all_batches(tiny_llama, rows):
    result = evaluate_perplexity(tiny_llama, Dataset.from_list(rows), PaddingCollator(pad_token_id=0), batch_size=3)
    loss, tokens = direct(tiny_llama, rows)
    assert result["tokens"] == tokens
    assert result["loss"] == pytest.approx(loss, abs=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]))

    # The model's own loss is a mean per batch; averaging those weights a 2-token batch like a
    # 60-token one, which is what evaluate_perplexity must not do.
    collator = PaddingCollator(pad_token_id=0)
    with torch.no_grad():
        batch_means = [tiny_llama(**collator(rows[i:i + 3])).loss.item() for i in range(0, len(rows), 3)]
    naive = sum(batch_means) / len(batch_means)
    assert abs(naive - result["loss"]) > 1e-2


def test_batch_size_does_not_change_the_result(tiny_llama, rows):
    collator = PaddingCollator(pad_token_id=0)
    one = evaluate_perplexity(tiny_llama, rows, collator, batch_size=1)
    all_at_once = evaluate_perplexity(tiny_llama, rows, collator, batch_size=len(rows))
    assert one["tokens"] == all_at_once["tokens"]
    assert one["loss"] == pytest.approx(all_at_once["loss"], abs=1e-5)


def test_packed_batches_give_the_same_loss(tiny_llama, rows):
    # The packed collator masks each example's first label; that label is never a target after
    # the shift anyway, so packing must not change the scored tokens or the loss.
    packed = evaluate_perplexity(tiny_llama, rows, PackedCollator(pad_token_id=0), batch_size=3)
    loss, tokens = direct(tiny_llama, rows)
    assert packed["tokens"] == tokens
    assert packed["loss"] == pytest.approx(loss, abs=1e-5)


def test_no_trained_tokens_is_an_error(tiny_llama):
    rows = [{"input_ids": [1, 2, 3], "labels": [-100, -100, -100]}]
    with pytest.raises(DataError, match="no trained tokens"):
        evaluate_perplexity(tiny_llama, rows, PaddingCollator(pad_token_id=0))
