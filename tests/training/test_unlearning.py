"""Unlearning on the built-in fictional facts: a tiny Llama is first taught all the facts, then
asked to forget one person. The forget-set loss must rise (on the trained questions and on their
paraphrases) while the retain-set loss stays close."""

import json

import pytest
import torch

from tunesmith.api import FineTuner
from tunesmith.config import load_config
from tunesmith.data.builtin import BUILTIN_DATASETS
from tunesmith.data.builtin.fictional_facts import FORGET_PERSON
from tunesmith.errors import ConfigError
from tunesmith.training.unlearning import ForgetRetainCollator, ForgetRetainRows, sequence_nll

COMMON = ["train.precision=fp32", "data.cache=false", "data.template=plain", "train.logging_steps=2"]


@pytest.fixture(scope="module")
def taught(tmp_path_factory, tiny_llama_dir):
    """The tiny model after learning every fact (full fine-tuning): the starting point to unlearn from."""
    out = tmp_path_factory.mktemp("facts") / "taught"
    cfg = load_config(overrides=[f"model.name_or_path={tiny_llama_dir}", "data=facts", "peft=full", "train.lr=1e-2",
                                 "train.max_steps=40", "train.batch_size=16", "train.warmup_ratio=0",
                                 "eval.before_after=off", f"output_dir={out}", *COMMON])
    FineTuner(cfg).train()
    return out


@pytest.fixture(scope="module")
def unlearn(taught, tmp_path_factory):
    """``unlearn(trainer, method)`` -> (before, after) losses; each run happens once per module."""
    done = {}

    def run(trainer, method):
        if (trainer, method) not in done:
            out = tmp_path_factory.mktemp(f"{trainer}-{method}")
            lr = "1e-3" if method == "full" else "1e-2"
            cfg = load_config(overrides=[
                f"model.name_or_path={taught}", "data=facts-forget", "data.retain=facts-retain",
                f"train.trainer={trainer}", f"peft={method}", f"train.lr={lr}", "train.max_steps=6",
                "train.batch_size=8", "train.warmup_ratio=0", f"output_dir={out}", *COMMON])
            result = FineTuner(cfg).train()
            saved = json.loads((result.run_dir / "eval_results.json").read_text())
            assert saved["before"] == result.before and saved["after"] == result.after
            done[trainer, method] = result.before, result.after, result.run_dir
        return done[trainer, method]

    return run


@pytest.mark.parametrize("trainer, method", [("grad_diff", "full"), ("npo", "lora"), ("npo", "full")])
def test_forget_loss_rises_and_retain_loss_stays_close(unlearn, trainer, method):
    before, after, run_dir = unlearn(trainer, method)
    assert before["forget_loss"] < 8.0  # the facts were learned (uniform guessing: ln 49152 = 10.8)
    forget_rise = after["forget_loss"] - before["forget_loss"]
    retain_change = abs(after["retain_loss"] - before["retain_loss"])
    held_out_change = abs(after["retain_held_out_loss"] - before["retain_held_out_loss"])
    assert forget_rise > 1.0, (before, after)
    assert after["forget_held_out_loss"] > before["forget_held_out_loss"] + 0.5  # paraphrases forgotten too
    # "Close": the retain loss moves by less than a third of the forget loss's rise (measured on this
    # tiny model: 0.20-0.25 for the retain examples, 0.08-0.18 for their paraphrases).
    assert retain_change < forget_rise / 3, (before, after)
    assert held_out_change < forget_rise / 3, (before, after)
    logs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("forget_loss" in r and "retain_loss" in r for r in logs)


def test_gradient_ascent_raises_the_forget_loss_without_a_retain_term(unlearn):
    before, after, run_dir = unlearn("grad_ascent", "full")
    assert after["forget_loss"] - before["forget_loss"] > 1.0
    logs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("forget_loss" in r for r in logs) and not any("retain_loss" in r for r in logs)


def test_retain_set_is_required_for_grad_diff_and_npo(tiny_llama_dir, tmp_path):
    for trainer in ("grad_diff", "npo"):
        cfg = load_config(overrides=[f"model.name_or_path={tiny_llama_dir}", "data=facts-forget",
                                     f"train.trainer={trainer}", f"output_dir={tmp_path / trainer}", *COMMON])
        with pytest.raises(ConfigError, match="data.retain"):
            FineTuner(cfg).train()


def test_unlearning_trainers_refuse_other_tasks(tmp_path):
    from tunesmith.api.choices.task import resolve_trainer

    with pytest.raises(ConfigError, match="train.trainer: 'npo' trains causal_lm models"):
        resolve_trainer("npo", "sequence_classification")
    assert resolve_trainer("auto", "sequence_classification") == "classification"


def test_builtin_facts_split_one_person_from_the_others():
    forget = BUILTIN_DATASETS.get("facts-forget").build("train", 0, None)
    retain = BUILTIN_DATASETS.get("facts-retain").build("train", 0, None)
    everything = BUILTIN_DATASETS.get("facts").build("train", 0, None)
    assert all(FORGET_PERSON in r["question"] for r in forget) and len(forget) == 10
    assert not any(FORGET_PERSON in r["question"] for r in retain) and len(retain) == 70
    assert sorted(map(str, forget + retain)) == sorted(map(str, everything))
    paraphrased = BUILTIN_DATASETS.get("facts-forget").build("test", 0, None)
    assert {r["answer"] for r in paraphrased} == {r["answer"] for r in forget}  # same facts
    assert not {r["question"] for r in paraphrased} & {r["question"] for r in forget}  # other words
    assert BUILTIN_DATASETS.get("facts").build("train", 1, None) != everything  # the seed shuffles
    assert sorted(map(str, BUILTIN_DATASETS.get("facts").build("train", 1, None))) == sorted(map(str, everything))


def test_paired_rows_draw_new_retain_examples_reproducibly():
    forget = [{"input_ids": [1, 2], "labels": [-100, 2]}]
    retain = [{"input_ids": [10 + i], "labels": [10 + i]} for i in range(50)]
    rows, again = ForgetRetainRows(forget, retain, seed=3), ForgetRetainRows(forget, retain, seed=3)
    drawn = [rows[0]["retain_input_ids"][0] for _ in range(6)]
    assert drawn == [again[0]["retain_input_ids"][0] for _ in range(6)]
    assert len(set(drawn)) > 1  # each epoch pairs the forget example with another retain example
    assert rows[0]["input_ids"] == [1, 2]


def test_collator_pads_each_half_on_its_own():
    from tunesmith.data.collators import PaddingCollator

    collate = ForgetRetainCollator(PaddingCollator(pad_token_id=0))
    batch = collate([{"input_ids": [1, 2, 3], "labels": [-100, 2, 3], "retain_input_ids": [7], "retain_labels": [7]},
                     {"input_ids": [4], "labels": [4], "retain_input_ids": [8, 9], "retain_labels": [8, 9]}])
    assert batch["input_ids"].shape == (2, 3) and batch["retain_input_ids"].shape == (2, 2)
    assert batch["retain_labels"].tolist() == [[7, -100], [8, 9]]


def test_sequence_nll_sums_trained_next_tokens():
    logits = torch.zeros(1, 3, 4)  # uniform over 4 tokens: ln 4 nats per scored token
    nll, count = sequence_nll(logits, torch.tensor([[-100, 1, 2]]))
    assert count.tolist() == [2]
    assert torch.allclose(nll, torch.tensor([2 * torch.log(torch.tensor(4.0))]))



def test_npo_rows_hold_one_example_each():
    from tunesmith.api.choices.batching import resolve_packing

    # npo scores each forget answer as a whole: auto pads instead of sharing rows; grad_diff does not mind.
    assert resolve_packing("auto", "causal_lm", "llama", one_example_per_row=True) == "none"
    assert resolve_packing("auto", "causal_lm", "llama") == "padding_free"
    for packing in ("padding_free", "pack"):
        with pytest.raises(ConfigError, match=f"data.packing: '{packing}' puts several examples in one row"):
            resolve_packing(packing, "causal_lm", "llama", one_example_per_row=True)
