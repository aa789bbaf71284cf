"""evaluate_held_out on tiny random models: generation + scoring, token loss, and classifier labels."""

import pytest
import torch
from datasets import Dataset

from tunesmith.config import load_config
from tunesmith.data.examples import Conversation, Message, Seq2SeqExample
from tunesmith.data.templates import model_prompt
from tunesmith.errors import DataError
from tunesmith.evaluation.evaluate import evaluate_held_out, settings_from_config
from tunesmith.evaluation.generation import evaluate_generation, prompt_items
from tunesmith.evaluation.metrics import METRICS, Metric
from tunesmith.models.generation import GenerationSettings, generate_texts


@pytest.fixture(scope="module")
def lm(chatty_llama_dir):
    from transformers import AutoModelForCausalLM

    from tunesmith.models.loading import load_tokenizer

    return AutoModelForCausalLM.from_pretrained(chatty_llama_dir).eval(), load_tokenizer(str(chatty_llama_dir))


def questions(n=5):
    # Prompts of very different lengths, so a batch pads a lot on the left.
    return [Conversation([Message("system", "Answer."), Message("user", "Add 1 and 2. " * (1 + 3 * i)),
                          Message("assistant", f"#### {i}")], reference=str(i)) for i in range(n)]


def recorder():
    seen = {}

    def compute(predictions, references):
        seen["predictions"], seen["references"] = predictions, references
        return [len(p) > 3 for p in predictions]

    return Metric("recorded", "generations", compute, "recorded"), seen


def test_generation_renders_prompts_as_training_did_and_scores_them(lm):
    model, tok = lm
    metric, seen = recorder()
    settings = GenerationSettings(max_new_tokens=6)
    items = prompt_items(questions())
    result = evaluate_generation(model, tok, items, metric, settings, batch_size=2, desc=None, num_samples=3)
    expected = generate_texts(model, tok, [model_prompt(tok, c.prompt_messages()) for c in questions()], settings, 1)
    assert all(expected)  # the chatty tiny model writes words for every prompt
    assert seen["predictions"] == expected  # batched with left padding == one prompt at a time
    assert seen["references"] == ["0", "1", "2", "3", "4"]
    assert result["total"] == 5 and result["correct"] == sum(len(p) > 3 for p in expected)
    assert result["score"] == pytest.approx(result["correct"] / 5)
    assert len(result["samples"]) == 3
    assert result["samples"][1] == {"question": "Add 1 and 2. " * 4, "reference": "1", "output": expected[1],
                                    "score": float(len(expected[1]) > 3), "correct": len(expected[1]) > 3}
    assert result["settings"] == {"max_new_tokens": 6, "do_sample": False}


def test_sampling_settings_come_from_the_eval_config(lm):
    cfg = load_config(overrides=["eval.do_sample=true", "eval.temperature=1.5", "eval.top_p=0.8",
                                 "eval.max_new_tokens=12"])
    assert settings_from_config(cfg.eval) == GenerationSettings(12, True, 1.5, 0.8)
    assert settings_from_config(load_config().eval).do_sample is False
    model, tok = lm
    items = prompt_items(questions(3))
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        runs.append(evaluate_generation(model, tok, items, METRICS.get("exact_match"), settings_from_config(cfg.eval),
                                        desc=None)["samples"])
    outputs = [[s["output"] for s in run] for run in runs]
    assert outputs[0] == outputs[1] and outputs[0] != outputs[2]  # seeded sampling repeats; another seed differs
    assert runs[0][0].keys() >= {"question", "reference", "output", "correct"}


def test_rouge_on_source_target_examples(lm):
    model, tok = lm
    held_out = [Seq2SeqExample("Summarise: the cat sat on the mat.", "cat on mat"), Seq2SeqExample("Hi", "hello")]
    result = evaluate_held_out(model, tok, METRICS.get("rouge_l"), "causal_lm", held_out=held_out,
                               settings=GenerationSettings(4), desc=None)
    assert result["metric"] == "rouge_l" and result["total"] == 2 and 0.0 <= result["score"] <= 1.0
    assert "correct" not in result and {"precision", "recall"} <= result.keys()
    assert (result["metric_label"], result["percent"], result["higher_is_better"]) == ("ROUGE-L", False, True)
    with pytest.raises(DataError, match="no held-out data"):
        evaluate_held_out(model, tok, METRICS.get("rouge_l"), "causal_lm", held_out=[], desc=None)


def test_perplexity_through_the_dispatcher_matches_the_evaluator(lm):
    from tunesmith.data.collators import PaddingCollator
    from tunesmith.evaluation.language_model import evaluate_perplexity

    model, tok = lm
    rows = [{"input_ids": list(range(5, 5 + n)), "labels": [-100, -100] + list(range(7, 5 + n))} for n in (6, 9, 4)]
    data = Dataset.from_list(rows)
    result = evaluate_held_out(model, tok, METRICS.get("perplexity"), "causal_lm", dataset=data, batch_size=2,
                               desc=None)
    direct = evaluate_perplexity(model, data, PaddingCollator(pad_token_id=tok.pad_token_id), batch_size=1)
    assert result["score"] == pytest.approx(direct["perplexity"], rel=1e-5)
    assert result["tokens"] == direct["tokens"] == 4 + 7 + 2
    assert result["higher_is_better"] is False
    capped = evaluate_held_out(model, tok, METRICS.get("perplexity"), "causal_lm", dataset=data, max_samples=1,
                               desc=None)
    assert capped["total"] == 1 and capped["tokens"] == 4


def test_a_registered_label_metric_adds_its_score_to_the_classification_metrics():
    from transformers import BertConfig, BertForSequenceClassification

    from tunesmith.models.loading import load_tokenizer

    torch.manual_seed(0)
    tok = load_tokenizer("minilm-l6")
    model = BertForSequenceClassification(BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})).eval()
    rows = [{**tok(t), "labels": y} for t, y in [("good", 1), ("bad", 0), ("fine film", 1), ("awful", 0)]]
    seen = {}

    def pos_recall(predictions, references):
        seen["args"] = (predictions, references)
        hits = [p == "pos" for p, r in zip(predictions, references) if r == "pos"]
        return {"score": sum(hits) / len(hits)}

    metric = Metric("pos_recall", "labels", pos_recall, "recall of pos")
    result = evaluate_held_out(model, tok, metric, "sequence_classification", dataset=Dataset.from_list(rows),
                               desc=None)
    predicted, references = seen["args"]
    assert references == ["pos", "neg", "pos", "neg"] and len(predicted) == 4
    assert result["metric"] == "pos_recall" and result["score"] == pytest.approx(
        sum(p == "pos" for p, r in zip(predicted, references) if r == "pos") / 2)
    assert {"accuracy", "macro_f1", "mcc", "confusion_matrix"} <= result.keys() and "predictions" not in result
    plain = evaluate_held_out(model, tok, METRICS.get("accuracy"), "sequence_classification",
                              dataset=Dataset.from_list(rows), desc=None)
    assert plain["score"] == plain["accuracy"] and plain["percent"] is True
