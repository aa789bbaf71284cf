import copy
import math
import random
import warnings

import pytest
import torch
from datasets import Dataset

from tunesmith.data.collators import ClassificationCollator
from tunesmith.errors import DataError, ModelError
from tunesmith.evaluation.classification import (classification_metrics, evaluate_classification,
                                                 format_confusion_matrix)

# --- metrics on hand-made predictions -------------------------------------------------------------
#
# 3 classes, 6 examples:  true [a, a, b, b, c, c]  predicted [a, b, b, b, c, a]
# confusion (rows true, columns predicted): a [1, 1, 0], b [0, 2, 0], c [1, 0, 1]
# a: precision 1/2, recall 1/2, F1 1/2
# b: precision 2/3, recall 1,   F1 2*(2/3)/(5/3) = 4/5
# c: precision 1,   recall 1/2, F1 2*(1/2)/(3/2) = 2/3
# macro F1 = (1/2 + 4/5 + 2/3) / 3 = 59/90
# MCC (multiclass, Gorodkin): c=4 correct, s=6, predicted counts p=[2,3,1], true counts t=[2,2,2]
#   (c*s - sum p*t) / sqrt((s^2 - sum p^2)(s^2 - sum t^2)) = (24 - 12) / sqrt(22 * 24) = 12 / sqrt(528)

NAMES = ["a", "b", "c"]


def test_three_class_metrics_match_hand_computation():
    m = classification_metrics([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], NAMES)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["macro_f1"] == pytest.approx(59 / 90)
    assert m["mcc"] == pytest.approx(12 / math.sqrt(528))
    assert m["total"] == 6 and m["correct"] == 4
    assert m["confusion_matrix"] == {"labels": NAMES, "matrix": [[1, 1, 0], [0, 2, 0], [1, 0, 1]]}
    expected = {
        "a": (1 / 2, 1 / 2, 1 / 2, 2, 2),
        "b": (2 / 3, 1.0, 4 / 5, 2, 3),
        "c": (1.0, 1 / 2, 2 / 3, 2, 1),
    }
    for name, (p, r, f1, support, predicted) in expected.items():
        got = m["per_class"][name]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((p, r, f1))
        assert (got["support"], got["predicted"]) == (support, predicted)


def test_class_never_predicted_scores_zero_without_warnings():
    # true [a, b, c, c], predicted [a, b, b, b]: c is never predicted.
    # a: P=R=F1=1; b: P=1/3, R=1, F1=1/2; c: P=0 (0/0 -> 0), R=0, F1=0; macro F1 = 1/2.
    # MCC: c=2, s=4, p=[1,3,0], t=[1,1,2] -> (8 - 4) / sqrt((16 - 10)(16 - 6)) = 4 / sqrt(60)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zero_division is handled, so sklearn must not warn
        m = classification_metrics([0, 1, 2, 2], [0, 1, 1, 1], NAMES)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx(0.5)
    assert m["mcc"] == pytest.approx(4 / math.sqrt(60))
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2, "predicted": 0}
    assert m["per_class"]["b"]["precision"] == pytest.approx(1 / 3)


def test_class_absent_everywhere_is_listed_but_not_averaged():
    m = classification_metrics([0, 1, 2, 2], [0, 1, 1, 1], NAMES + ["d"])
    assert m["macro_f1"] == pytest.approx(0.5)  # same as without "d"
    assert m["per_class"]["d"]["support"] == 0 and m["per_class"]["d"]["predicted"] == 0
    assert m["confusion_matrix"]["matrix"][3] == [0, 0, 0, 0]


def test_single_predicted_class_and_default_names():
    m = classification_metrics([0, 1, 1], [1, 1, 1])
    assert m["mcc"] == 0.0  # undefined (constant predictions): reported as 0, not nan
    assert m["confusion_matrix"]["labels"] == ["0", "1"]
    assert m["accuracy"] == pytest.approx(2 / 3)


def test_bad_inputs_raise_data_errors():
    with pytest.raises(DataError, match="2 references but 1"):
        classification_metrics([0, 1], [0], NAMES)
    with pytest.raises(DataError, match="no examples"):
        classification_metrics([], [], NAMES)
    with pytest.raises(DataError, match=r"\[5\] have no name"):
        classification_metrics([0, 5], [0, 1], NAMES)


def test_format_confusion_matrix_aligns_columns():
    metrics = {"confusion_matrix": {"labels": ["neg", "positive"], "matrix": [[5, 1], [0, 123]]}}
    assert format_confusion_matrix(metrics).splitlines() == [
        "true \\ pred       neg  positive",
        "        neg         5         1",
        "   positive         0       123",
    ]


# --- evaluate_classification with a tiny random BERT ----------------------------------------------

@pytest.fixture(scope="module")
def tiny_bert():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=2)
    return BertForSequenceClassification(config).eval()


@pytest.fixture(scope="module")
def rows():
    rng = random.Random(0)
    out = []
    for i in range(11):  # 11 rows in batches of 4: the last batch is partial
        n = rng.randint(3, 12)
        out.append({"input_ids": [rng.randint(1, 99) for _ in range(n)], "token_type_ids": [0] * n,
                    "labels": i % 2, "text": f"row {i}"})
    return out


def direct_probs(model, rows):
    """Each row alone and unpadded, so batching and padding cannot hide a bug."""
    with torch.no_grad():
        return torch.cat([model(input_ids=torch.tensor([r["input_ids"]])).logits.softmax(-1) for r in rows])


def test_predictions_are_argmax_of_the_logits(tiny_bert, rows):
    dataset = Dataset.from_list(rows)
    result = evaluate_classification(tiny_bert, dataset, ClassificationCollator(pad_token_id=0), batch_size=4,
                                     label_names=["neg", "pos"], num_samples=3)
    probs = direct_probs(tiny_bert, rows)
    expected_pred = probs.argmax(-1).tolist()
    labels = [r["labels"] for r in rows]

    assert {"accuracy", "macro_f1", "mcc", "per_class", "confusion_matrix", "samples", "total"} <= set(result)
    assert result["total"] == 11
    assert result["correct"] == sum(p == t for p, t in zip(expected_pred, labels))
    assert result == {**classification_metrics(labels, expected_pred, ["neg", "pos"]), "samples": result["samples"]}
    assert len(result["samples"]) == 3
    for s in result["samples"]:
        i = s["index"]
        assert s["label"] == ["neg", "pos"][labels[i]]
        assert s["predicted"] == ["neg", "pos"][expected_pred[i]]
        assert s["confidence"] == pytest.approx(probs[i].max().item(), abs=1e-5)
    assert not tiny_bert.training


def test_peft_model_list_rows_autocast_and_training_mode_restored(tiny_bert, rows):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(copy.deepcopy(tiny_bert), LoraConfig(task_type="SEQ_CLS", target_modules=["query", "value"]))
    model.train()
    entered = []

    def autocast():
        entered.append(True)
        return torch.autocast("cpu", dtype=torch.bfloat16)

    result = evaluate_classification(model, rows, ClassificationCollator(pad_token_id=0), batch_size=5,
                                     autocast=autocast)
    assert len(entered) == 3  # one context per batch: 5 + 5 + 1 rows
    assert model.training  # restored after the pass
    assert result["confusion_matrix"]["labels"] == ["LABEL_0", "LABEL_1"]  # from config.id2label
    assert sum(map(sum, result["confusion_matrix"]["matrix"])) == 11


def test_wrong_number_of_label_names_and_missing_labels(tiny_bert, rows):
    collator = ClassificationCollator(pad_token_id=0)
    with pytest.raises(ModelError, match="scores 2 classes"):
        evaluate_classification(tiny_bert, rows, collator, label_names=["a", "b", "c"])
    unlabelled = [{"input_ids": r["input_ids"]} for r in rows]
    with pytest.raises(DataError, match="labels"):
        evaluate_classification(tiny_bert, unlabelled, collator)
    with pytest.raises(DataError, match="empty"):
        evaluate_classification(tiny_bert, [], collator)
