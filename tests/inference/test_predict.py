"""Classifier predictions: the same tokenization as training, label names from the model, handlers."""

import pytest
import torch

from tunesmith.errors import DataError, ModelError
from tunesmith.inference.handler import ChatInferenceHandler
from tunesmith.inference.predict import ClassifierInferenceHandler, is_classifier, predict_labels
from tunesmith.models.generation import GenerationSettings


@pytest.fixture(scope="module")
def classifier():
    from transformers import BertConfig, BertForSequenceClassification

    from tunesmith.models.loading import load_tokenizer

    torch.manual_seed(0)
    tok = load_tokenizer("minilm-l6")
    model = BertForSequenceClassification(BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, num_labels=3, initializer_range=0.5,
        id2label={0: "neg", 1: "neutral", 2: "pos"}, label2id={"neg": 0, "neutral": 1, "pos": 2})).eval()
    return model, tok


def direct(model, tok, text, pair=None):
    batch = tok(text, pair, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits.softmax(-1)[0].tolist()


def test_predictions_match_the_model_run_directly(classifier):
    model, tok = classifier
    texts = ["A wonderful film.", "Dull.", "It was neither good nor bad, just long and a little slow in the middle."]
    pairs = [None, "Boring.", None]
    results = predict_labels(model, tok, texts, pairs, batch_size=2)
    names = ["neg", "neutral", "pos"]
    for result, text, pair in zip(results, texts, pairs):
        probs = direct(model, tok, text, pair)
        assert list(result["scores"]) == names
        assert list(result["scores"].values()) == pytest.approx(probs, abs=1e-5)
        best = max(range(3), key=probs.__getitem__)
        assert result["label"] == names[best] and result["confidence"] == pytest.approx(probs[best], abs=1e-5)
    assert len({tuple(r["scores"].values()) for r in results}) == 3  # each input scored on its own


def test_long_inputs_are_cut_at_the_end_as_in_training(classifier):
    model, tok = classifier
    long = "good " * 400
    (result,) = predict_labels(model, tok, [long], max_length=32)
    cut = tok(long, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        probs = model(**cut).logits.softmax(-1)[0].tolist()
    assert list(result["scores"].values()) == pytest.approx(probs, abs=1e-5)


def test_handlers_answer_with_label_names(classifier):
    model, tok = classifier
    texts = ["Great.", "Terrible."]
    labels = [r["label"] for r in predict_labels(model, tok, texts)]
    assert ClassifierInferenceHandler().generate(model, tok, texts, GenerationSettings()) == labels
    # The default chat handler serves a classifier too (FineTuner.generate on a classification run).
    assert ChatInferenceHandler().generate(model, tok, texts, GenerationSettings()) == labels
    assert ClassifierInferenceHandler().predict(model, tok, texts)[0]["label"] == labels[0]


def test_bad_inputs(classifier, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    model, tok = classifier
    assert is_classifier(model) and predict_labels(model, tok, []) == []
    with pytest.raises(DataError, match="2 texts but 1 second texts"):
        predict_labels(model, tok, ["a", "b"], ["x"])
    with pytest.raises(DataError, match="input 1: expected text as a string"):
        predict_labels(model, tok, ["a", 7])
    lm = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    assert not is_classifier(lm)
    with pytest.raises(ModelError, match="not a sequence classifier"):
        predict_labels(lm, tok, ["a"])
