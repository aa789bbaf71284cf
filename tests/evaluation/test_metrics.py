"""The metrics registry, ROUGE-L by hand, and how eval.metric=auto picks a metric."""

import pytest

from tunesmith.data.examples import ClassificationExample, Conversation, Message, Seq2SeqExample, TextExample
from tunesmith.errors import ConfigError, DataError
from tunesmith.api.choices.evaluation import choose_metric
from tunesmith.evaluation.evaluate import check_fits
from tunesmith.evaluation.generation import prompt_items
from tunesmith.evaluation.metrics import (METRICS, Metric, format_score, format_value, register_metric,
                                          resolve_metric)
from tunesmith.evaluation.rouge import rouge_l, rouge_l_scores


def test_builtin_metrics_are_registered_with_what_they_need():
    assert {n: METRICS.get(n).needs for n in ("exact_match", "rouge_l", "accuracy", "perplexity")} == {
        "exact_match": "generations", "rouge_l": "generations", "accuracy": "labels", "perplexity": "token_loss"}
    assert METRICS.get("perplexity").higher_is_better is False


def test_exact_match_scores_final_numbers_gsm8k_style():
    scored = METRICS.get("exact_match").score(["3 + 4 = 7\n#### 7", "#### 1,200", "it is 8"], ["7", "1200", "7"])
    assert scored == {"score": pytest.approx(2 / 3), "per_example": [1.0, 1.0, 0.0], "binary": True}


def test_a_user_metric_is_one_decorated_function():
    @register_metric("test_contains", label="contains the answer", percent=True)
    def contains(predictions, references):
        return [r in p for p, r in zip(predictions, references)]

    metric = resolve_metric("test_contains")
    assert (metric.needs, metric.label, metric.percent) == ("generations", "contains the answer", True)
    assert metric.score(["the answer is 42", "no idea", "42!"], ["42", "7", "42"])["score"] == pytest.approx(2 / 3)
    assert format_score({"metric": "test_contains", "score": 0.5, "correct": 1, "total": 2}) == \
        "contains the answer 50.0% (1/2)"
    with pytest.raises(ConfigError, match="already registered"):
        register_metric("test_contains")(contains)


def test_a_corpus_level_metric_returns_a_dict_with_score():
    metric = Metric("test_len", "generations", lambda p, r: {"score": 3, "longest": 9})
    assert metric.score(["a"], ["b"]) == {"score": 3.0, "longest": 9}


@pytest.mark.parametrize("compute, message", [
    (lambda p, r: {"value": 1}, "without 'score'"),
    (lambda p, r: [1.0], "returned 1 scores for 2 examples"),
    (lambda p, r: ["good", "bad"], "expected a number"),
    (lambda p, r: [float("nan"), 1.0], "NaN"),
])
def test_a_broken_metric_fails_with_its_name(compute, message):
    with pytest.raises(DataError, match=message):
        Metric("broken", "generations", compute).score(["x", "y"], ["x", "y"])


def test_mismatched_or_empty_inputs_are_refused():
    metric = METRICS.get("exact_match")
    with pytest.raises(DataError, match="2 predictions but 1 references"):
        metric.score(["1", "2"], ["1"])
    with pytest.raises(DataError, match="no examples"):
        metric.score([], [])
    with pytest.raises(ConfigError, match="own evaluator"):
        METRICS.get("accuracy").score(["a"], ["a"])


def test_unknown_metric_names_the_closest():
    with pytest.raises(ConfigError, match="eval.metric: unknown metric 'rouge'.*Did you mean 'rouge_l'"):
        resolve_metric("rouge")
    with pytest.raises(ConfigError, match="needs="):
        register_metric("bad", needs="token_loss")


def test_values_are_shown_as_the_metric_wants():
    assert format_value("exact_match", 0.69) == "69.0%"
    assert format_value("exact_match", 0.6, signed=True) == "+60.0%"
    assert format_value("rouge_l", 0.41234) == "0.4123"
    assert format_score({"metric": "perplexity", "score": 3.2117, "loss": 1.1668}) == "perplexity 3.212 (loss 1.1668)"


# --- ROUGE-L ------------------------------------------------------------------------------------------
def test_rouge_l_by_hand():
    # prediction 6 words, reference 5; the longest common subsequence is "cat sat on mat" (mats
    # stemmed to mat): precision 4/6, recall 4/5, F = 2PR / (P + R) = 8/11.
    score = rouge_l("the cat sat on the mat", "a cat sat on mats")
    assert score == {"precision": pytest.approx(4 / 6), "recall": pytest.approx(4 / 5), "f": pytest.approx(8 / 11)}
    assert rouge_l("same words here", "same words here")["f"] == pytest.approx(1.0)
    assert rouge_l("nothing alike", "completely different")["f"] == 0.0
    # Order matters: a subsequence, not a bag of words.
    assert rouge_l("c b a", "a b c")["f"] == pytest.approx(1 / 3)


def test_rouge_l_scores_average_per_example():
    out = rouge_l_scores(["a b c", "x"], ["a b c", "y"])
    assert out["score"] == pytest.approx(0.5) and out["per_example"] == [1.0, 0.0]
    assert METRICS.get("rouge_l").score(["a b c", "x"], ["a b c", "y"])["binary"] is False


# --- eval.metric=auto -----------------------------------------------------------------------------------
def conv(answer, reference=None):
    return Conversation([Message("user", "q?"), Message("assistant", answer)], reference=reference)


@pytest.mark.parametrize("task, data, held_out, expected", [
    ("sequence_classification", "reviews.jsonl", [ClassificationExample("good", 1)], "accuracy"),
    ("causal_lm", "arith", [conv("#### 4", "4")], "exact_match"),
    ("causal_lm", "dialogues.jsonl", [Seq2SeqExample("long text", "summary")], "rouge_l"),
    ("seq2seq", "pairs.jsonl", [Seq2SeqExample("long text", "summary")], "rouge_l"),
    ("causal_lm", "qa.jsonl", [conv("It is 4.", "4")], "exact_match"),
    ("causal_lm", "chats.jsonl", [conv("Hello!")], "perplexity"),
    ("causal_lm", "corpus.txt", [TextExample("plain text")], "perplexity"),
])
def test_auto_picks_by_task_and_data(task, data, held_out, expected):
    assert choose_metric("auto", task, data, held_out).name == expected


def test_a_metric_that_does_not_fit_the_task_is_refused():
    with pytest.raises(ConfigError, match="'accuracy' scores a classifier's labels, but the model is causal_lm"):
        choose_metric("accuracy", "causal_lm", "arith", [])
    with pytest.raises(ConfigError, match="'rouge_l' needs generations, but the model is a classifier"):
        check_fits(METRICS.get("rouge_l"), "sequence_classification")


def test_prompt_items_take_references_from_the_examples():
    multi = Conversation([Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello"),
                          Message("user", "2+2?"), Message("assistant", "#### 4")], reference="4")
    items = prompt_items([multi, Seq2SeqExample("A long dialogue.", "A summary."), TextExample("skipped"),
                          conv("Fine.")], limit=10)
    assert [(len(i.messages), i.reference, i.question) for i in items] == [
        (4, "4", "2+2?"), (1, "A summary.", "A long dialogue."), (1, "Fine.", "q?")]
    assert len(prompt_items([conv("a"), conv("b"), conv("c")], limit=2)) == 2
