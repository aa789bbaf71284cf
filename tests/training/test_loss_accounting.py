"""Loss accounting under gradient accumulation: 4 micro-batches of 2 give the same gradients as one
batch of 8, on variable-length data, for every task's trainer. The per-micro-batch mean (the
classic accumulation bug) is computed alongside to show that the data would expose it."""

import copy
import json

import pytest
import torch

from tunesmith.config import load_config
from tunesmith.api.choices.batching import build_collator
from tunesmith.api.data_entry import build_datasets
from tunesmith.api.choices.training import build_training_args
from tunesmith.api.choices.task import build_trainer

from grad_capture import GradCapture



def one_step_grads(model, dataset, collator, tokenizer, task, tmp_path, batch_size, grad_accum):
    cfg = load_config(overrides=[f"train.batch_size={batch_size}", f"train.grad_accum={grad_accum}",
                                 "train.max_steps=1", "train.max_grad_norm=0", "train.warmup_ratio=0",
                                 "train.lr=1e-3", "train.precision=fp32", "train.logging_steps=1"])
    args = build_training_args(cfg, tmp_path / f"run-{batch_size}x{grad_accum}", "cpu", "fp32", False)
    capture = GradCapture()
    trainer = build_trainer("auto", {}, task, model=copy.deepcopy(model), args=args, train_dataset=dataset,
                            eval_dataset=None, data_collator=collator, callbacks=[capture],
                            processing_class=tokenizer)
    trainer.train()
    assert capture.grads, "no gradient was captured"
    return capture.grads


def per_micro_batch_mean_grads(model, dataset, collator, task, size=2):
    """What averaging each micro-batch's mean loss would give (the wrong normalisation)."""
    from tunesmith.training.trainers import DecoderInputs

    model = copy.deepcopy(model).train()
    if task == "seq2seq":
        collator = DecoderInputs(collator, model.config.decoder_start_token_id, model.config.pad_token_id)
    steps = len(dataset) // size
    for i in range(steps):
        batch = collator([dataset[j] for j in range(i * size, (i + 1) * size)])
        (model(**batch).loss / steps).backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def relative_difference(a, b):
    num = sum(float((a[n] - b[n]).norm() ** 2) for n in a) ** 0.5
    den = sum(float(b[n].norm() ** 2) for n in b) ** 0.5
    return num / den


def check_accumulation(model, dataset, collator, tokenizer, task, tmp_path):
    assert len(dataset) == 8
    whole = one_step_grads(model, dataset, collator, tokenizer, task, tmp_path, batch_size=8, grad_accum=1)
    accumulated = one_step_grads(model, dataset, collator, tokenizer, task, tmp_path, batch_size=2, grad_accum=4)
    assert whole.keys() == accumulated.keys()
    for name in whole:
        torch.testing.assert_close(accumulated[name], whole[name], rtol=1e-4, atol=1e-7, msg=name)
    # The same data with per-micro-batch means is clearly off, so the check above has teeth.
    assert relative_difference(per_micro_batch_mean_grads(model, dataset, collator, task), whole) > 0.02


def write_chats(path, smol_tokenizer):
    """Eight conversations whose assistant turns differ a lot in length (1 to 40 words), some with
    two assistant turns: the trained-token count per sequence ranges widely."""
    rows = []
    for i in range(8):
        words = " ".join(f"w{k}" for k in range(1 + (i * 37) % 41))
        messages = [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": words}]
        if i % 3 == 0:
            messages += [{"role": "user", "content": "And?"}, {"role": "assistant", "content": "Done."}]
        rows.append({"messages": messages})
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_sft_accumulation_matches_one_big_batch(tmp_path, tiny_llama_dir, smol_tokenizer):
    from transformers import AutoModelForCausalLM

    data = write_chats(tmp_path / "chats.jsonl", smol_tokenizer)
    bundle = build_datasets({"train": str(data), "format": "messages", "loss_on": "assistant", "cache": False},
                            smol_tokenizer)
    trained = [sum(1 for t in row["labels"] if t != -100) for row in bundle.train]
    assert max(trained) > 4 * min(trained)  # variable trained lengths, assistant tokens only
    assert all(row["labels"][0] == -100 for row in bundle.train)  # the prompt is not trained
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    collator = build_collator("auto", "causal_lm", smol_tokenizer)
    check_accumulation(model, bundle.train, collator, smol_tokenizer, "causal_lm", tmp_path)


def test_seq2seq_accumulation_matches_one_big_batch(tmp_path, smol_tokenizer):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(
        vocab_size=len(smol_tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout_rate=0.0,
        decoder_start_token_id=smol_tokenizer.pad_token_id, pad_token_id=smol_tokenizer.pad_token_id,
        eos_token_id=smol_tokenizer.eos_token_id))
    rows = [{"source": f"summarise: item {i}", "target": " ".join(["red"] * (1 + (i * 5) % 23))} for i in range(8)]
    data = tmp_path / "s2s.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    bundle = build_datasets({"train": str(data), "cache": False}, smol_tokenizer, task="seq2seq")
    collator = build_collator("auto", "seq2seq", smol_tokenizer)
    check_accumulation(model, bundle.train, collator, smol_tokenizer, "seq2seq", tmp_path)


def test_classification_accumulation_matches_one_big_batch(tmp_path):
    """Uneven micro-batches: 7 examples as 2+2+2+1 weigh each example the same as one batch of 7."""
    from transformers import BertConfig, BertForSequenceClassification

    from tunesmith.models.loading import load_tokenizer

    tok = load_tokenizer("minilm-l6")
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=2))
    bundle = build_datasets({"train": "sentiment", "max_samples": 7, "cache": False}, tok,
                            task="sequence_classification")
    collator = build_collator("auto", "sequence_classification", tok)
    whole = one_step_grads(model, bundle.train, collator, tok, "sequence_classification", tmp_path, 7, 1)
    accumulated = one_step_grads(model, bundle.train, collator, tok, "sequence_classification", tmp_path, 2, 4)
    for name in whole:
        torch.testing.assert_close(accumulated[name], whole[name], rtol=1e-4, atol=1e-7, msg=name)


@pytest.mark.parametrize("option", ["train.gradient_checkpointing=true"])
def test_gradient_checkpointing_gives_the_same_gradients(tmp_path, tiny_llama_dir, smol_tokenizer, option):
    from transformers import AutoModelForCausalLM

    data = write_chats(tmp_path / "chats.jsonl", smol_tokenizer)
    bundle = build_datasets({"train": str(data), "format": "messages", "cache": False}, smol_tokenizer)
    collator = build_collator("auto", "causal_lm", smol_tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    grads = []
    for extra in ([], [option]):
        cfg = load_config(overrides=["train.batch_size=8", "train.max_steps=1", "train.precision=fp32", *extra])
        args = build_training_args(cfg, tmp_path / f"gc{len(extra)}", "cpu", "fp32", False)
        assert bool(args.activation_checkpointing) == bool(extra)
        capture = GradCapture()
        build_trainer("sft", {}, "causal_lm", model=copy.deepcopy(model), args=args, train_dataset=bundle.train,
                      eval_dataset=None, data_collator=collator, callbacks=[capture],
                      processing_class=smol_tokenizer).train()
        grads.append(capture.grads)
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-7, msg=name)
