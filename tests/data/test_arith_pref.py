"""The arith-pref and arith-prompts built-ins: the arith problems as pairs with one carried slip, and as prompts."""

from __future__ import annotations

import re

import pytest

from tunesmith.data.builtin import BUILTIN_DATASETS
from tunesmith.data.builtin.arith import Step, build_arith, extract_final_number
from tunesmith.data.builtin.arith_pref import build_arith_pref, build_arith_prompts, carry_slip

LINE = re.compile(r"^(\d+) ([-+*/]) (\d+) = (\d+)\.$")


@pytest.fixture(scope="module")
def pref():
    return {split: build_arith_pref(split, 0, 400 if split == "train" else None) for split in ("train", "test")}


def text(row, side):
    return row[side][0]["content"]


def test_same_problems_and_answers_as_arith(pref):
    for split, rows in pref.items():
        arith = build_arith(split, 0, len(rows))
        assert [r["prompt"][0]["content"] for r in rows] == [a["messages"][0]["content"] for a in arith]
        assert [text(r, "chosen") for r in rows] == [a["messages"][1]["content"] for a in arith]
        assert [r["answer"] for r in rows] == [a["answer"] for a in arith]
    train_questions = {r["prompt"][0]["content"] for r in build_arith_pref("train", 0, None)}
    assert not train_questions & {r["prompt"][0]["content"] for r in pref["test"]}  # held-out problems only


def test_rejected_is_one_carried_slip(pref):
    for rows in pref.values():
        for row in rows:
            chosen, rejected = text(row, "chosen").split("\n"), text(row, "rejected").split("\n")
            assert chosen != rejected and len(chosen) == len(rejected)
            assert rejected[-1].startswith("#### ") and extract_final_number(text(row, "rejected")) != row["answer"]
            assert extract_final_number(text(row, "chosen")) == row["answer"]
            lines = [LINE.match(line).groups() for line in rejected[:-1]]  # same plausible format
            wrong = [i for i, (a, op, b, c) in enumerate(lines)
                     if {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b),
                         "/": int(a) / int(b)}[op] != int(c)]
            assert len(wrong) == 1  # exactly one arithmetic slip; every other line is right
            slip = wrong[0]
            assert chosen[:slip] == rejected[:slip]  # identical up to the slipped line
            a, op, b, _ = lines[slip]
            assert chosen[slip].startswith(f"{a} {op} {b} = ")
            assert rejected[-1] == f"#### {lines[-1][3]}"  # the wrong value carried to the end


def test_deterministic_and_seeded():
    assert build_arith_pref("test", 3, 20) == build_arith_pref("test", 3, 20)
    assert build_arith_pref("test", 3, 20) != build_arith_pref("test", 4, 20)


def test_carry_slip_follows_the_working():
    steps = (Step(4, "*", 6, 24), Step(3, "*", 5, 15), Step(24, "+", 15, 39, 0, 1))
    assert [s.c for s in carry_slip(steps, 1, 17)] == [24, 17, 41]
    assert carry_slip((Step(12, "+", 0, 12), Step(12, "/", 3, 4, 0)), 0, 13) is None  # 13 / 3 is not exact


def test_prompts_split_and_rows():
    rows = build_arith_prompts("test", 0, 50)
    arith = build_arith("test", 0, 50)
    assert rows == [{"prompt": a["messages"][0]["content"], "answer": a["answer"]} for a in arith]


def test_registered_with_format_system_prompt_and_metric():
    arith = BUILTIN_DATASETS.get("arith")
    for name, fmt in (("arith-pref", "preference"), ("arith-prompts", "prompt_only")):
        dataset = BUILTIN_DATASETS.get(name)
        assert dataset.format == fmt and dataset.metric == "exact_match" and dataset.splits == ("train", "test")
        assert dataset.system_prompt == arith.system_prompt and dataset.split_note == arith.split_note


def test_pipeline_examples_and_held_out_conversations(smol_tokenizer):
    from tunesmith.config import load_config
    from tunesmith.data.examples import Conversation, Message, PreferenceExample, PromptExample
    from tunesmith.api.data_entry import build_datasets, load_eval_conversations

    cfg = load_config(overrides=["data.train=arith-pref", "data.max_samples=20", "data.cache=false"]).data
    conversations = load_eval_conversations(cfg, 0, 5)
    arith = build_arith("test", 42, 5)  # built-in test splits are drawn with their held-out seed, whatever the run's
    system = Message("system", BUILTIN_DATASETS.get("arith").system_prompt)
    assert conversations == [Conversation([system, Message("user", a["messages"][0]["content"]),
                                           Message("assistant", a["messages"][1]["content"])],
                                          a["answer"], c.where) for a, c in zip(arith, conversations)]
    prompts = load_eval_conversations(load_config(overrides=["data.train=arith-prompts"]).data, 0, 5)
    assert [c.messages[1:] for c in prompts] == [[Message("user", a["messages"][0]["content"])] for a in arith]
    assert [c.prompt_messages() for c in prompts] == [c.messages for c in prompts]
    assert [c.reference for c in prompts] == [a["answer"] for a in arith]
    bundle = build_datasets(cfg, smol_tokenizer, seed=0)
    assert isinstance(bundle.held_out[0], PreferenceExample) and len(bundle.train) == 20
    assert bundle.held_out[0].prompt[0] == system and bundle.info.kind == "preference"
    prompt_bundle = build_datasets(load_config(overrides=["data.train=arith-prompts", "data.max_samples=4",
                                                          "data.cache=false"]).data, smol_tokenizer, seed=0)
    assert prompt_bundle.train.column_names == ["prompt_ids", "reference"]
    assert isinstance(prompt_bundle.held_out[0], PromptExample)


@pytest.mark.parametrize("packing, ok", [("pack", False), ("group_by_length", False), ("auto", True),
                                         ("padding_free", True), ("none", True)])
def test_packing_is_checked_before_loading(packing, ok):
    from tunesmith.config import load_config
    from tunesmith.api.data_entry import check_data_config
    from tunesmith.errors import ConfigError

    cfg = load_config(overrides=["data.train=arith-pref", f"data.packing={packing}"]).data
    if ok:
        check_data_config(cfg)
    else:
        with pytest.raises(ConfigError, match=f"data.packing: '{packing}' cannot be used with preference data"):
            check_data_config(cfg)


def test_rejected_slip_stops_at_the_slipped_line():
    import pytest

    from tunesmith.data.builtin.arith_pref import build_arith_pref
    from tunesmith.errors import ConfigError

    carried = build_arith_pref("train", 0, 40)
    slip = build_arith_pref("train", 0, 40, rejected="slip")
    for full, short in zip(carried, slip):
        assert full["chosen"] == short["chosen"]
        wrong = short["rejected"][0]["content"]
        assert "####" not in wrong and full["rejected"][0]["content"].startswith(wrong)
        right_lines, wrong_lines = full["chosen"][0]["content"].split("\n"), wrong.split("\n")
        assert right_lines[:len(wrong_lines) - 1] == wrong_lines[:-1]  # the same lines before the slip
        assert right_lines[len(wrong_lines) - 1] != wrong_lines[-1]  # and the slipped line differs
    with pytest.raises(ConfigError, match="data.dataset_args.rejected"):
        build_arith_pref("train", 0, 2, rejected="half")


def test_rejected_misread_turns_one_operation_and_computes_the_rest_right():
    from tunesmith.data.builtin.arith_pref import OPPOSITE

    rows = build_arith_pref("train", 0, 300, rejected="misread")
    turned = 0
    for row in rows:
        chosen, rejected = text(row, "chosen").split("\n"), text(row, "rejected").split("\n")
        assert extract_final_number(text(row, "rejected")) != row["answer"]
        right, wrong = [LINE.match(x).groups() for x in chosen[:-1]], [LINE.match(x).groups() for x in rejected[:-1]]
        ops = [i for i, (r, w) in enumerate(zip(right, wrong)) if r[1] != w[1]]
        if not ops:
            continue  # no line could be turned: a carried slip instead
        turned += 1
        at = ops[0]
        assert ops == [at] and wrong[at][1] == OPPOSITE[right[at][1]] and chosen[:at] == rejected[:at]
        for a, op, b, c in wrong:  # every line of the misread working is computed right
            assert {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b), "/": int(a) / int(b)}[op] == int(c)
    assert turned > 0.8 * len(rows)
    mixed = build_arith_pref("train", 0, 300, rejected="mixed")
    same = sum(m["rejected"] == r["rejected"] for m, r in zip(mixed, rows))
    assert 0.3 * len(rows) < same < 0.7 * len(rows)  # about half misread, the rest slipped
    assert [m["chosen"] for m in mixed] == [r["chosen"] for r in rows]


def test_a_run_on_pairs_evaluates_on_another_builtin_with_that_builtins_format():
    from tunesmith.config.schema import DataConfig
    from tunesmith.data.examples import Conversation
    from tunesmith.api.data_entry import load_example_sets

    train, held_out, _ = load_example_sets(DataConfig(train="arith-pref", eval="arith", max_samples=4), seed=0)
    assert type(train.examples[0]).__name__ == "PreferenceExample"
    assert held_out and all(isinstance(e, Conversation) for e in held_out)


def test_the_training_datasets_arguments_do_not_reach_another_builtin_held_out_set(tmp_path):
    """``data.dataset_args`` are data.train's: a run on ``arith-pref {rejected: slip}`` scored on
    ``arith`` (``tunesmith eval RUN --data arith``) asks arith without them; with a file as
    data.train they are refused, whatever data.eval is."""
    import json

    from tunesmith.api.data_entry import load_example_sets
    from tunesmith.config.schema import DataConfig
    from tunesmith.api.data_entry import check_data_config
    from tunesmith.errors import ConfigError

    cfg = DataConfig(train="arith-pref", eval="arith", max_samples=4, dataset_args={"rejected": "slip"})
    check_data_config(cfg)
    train, held_out, _ = load_example_sets(cfg, seed=0)
    assert "####" not in train.examples[0].rejected[-1].content  # the argument reached data.train
    assert len(held_out) == 200
    rows = tmp_path / "pairs.jsonl"
    rows.write_text(json.dumps({"prompt": "1 + 1?", "chosen": "2", "rejected": "3"}) + "\n")
    with pytest.raises(ConfigError, match=r"data.dataset_args: \['rejected'\] given, but data.train=.*is not a registered dataset"):
        check_data_config(DataConfig(train=str(rows), eval="arith", dataset_args={"rejected": "slip"}))


def test_arith_kto_is_arith_pref_unpaired():
    from tunesmith.data.builtin.arith_pref import build_arith_kto

    for split in ("train", "test"):
        pairs = build_arith_pref(split, 0, 30)
        rows = build_arith_kto(split, 0, 60)
        assert len(rows) == 60
        for pair, desirable, undesirable in zip(pairs, rows[0::2], rows[1::2]):
            assert desirable == {"prompt": pair["prompt"], "completion": pair["chosen"], "label": True,
                                 "answer": pair["answer"]}
            assert undesirable == {"prompt": pair["prompt"], "completion": pair["rejected"], "label": False,
                                   "answer": pair["answer"]}
    assert build_arith_kto("train", 0, 5) == build_arith_kto("train", 0, 6)[:5]  # n counts rows
    slip = build_arith_kto("train", 0, 4, rejected="slip")
    assert slip[1]["completion"] == build_arith_pref("train", 0, 2, rejected="slip")[0]["rejected"]
    # arith's held-out split: no test prompt is a training prompt
    train = {r["prompt"][0]["content"] for r in build_arith_kto("train", 0, None)}
    test = build_arith_kto("test", 0, None)
    assert len(test) == 400 and not train & {r["prompt"][0]["content"] for r in test}
    dataset, arith = BUILTIN_DATASETS.get("arith-kto"), BUILTIN_DATASETS.get("arith")
    assert dataset.format == "kto" and dataset.metric == "exact_match" and dataset.splits == ("train", "test")
    assert dataset.system_prompt == arith.system_prompt and dataset.split_note == arith.split_note


def test_arith_kto_reads_as_unpaired_answers(smol_tokenizer):
    from tunesmith.api.data_entry import build_datasets
    from tunesmith.config import load_config
    from tunesmith.data.examples import Message, UnpairedPreferenceExample

    cfg = load_config(overrides=["data=arith-kto", "data.max_samples=8", "data.cache=false"]).data
    bundle = build_datasets(cfg, smol_tokenizer, seed=0)
    assert bundle.info.kind == "unpaired_preference" and len(bundle.train) == 8
    held_out = bundle.held_out[0]
    assert isinstance(held_out, UnpairedPreferenceExample) and held_out.desirable
    assert held_out.prompt[0] == Message("system", BUILTIN_DATASETS.get("arith").system_prompt)


def test_unpaired_answers_of_one_prompt_are_one_held_out_question():
    from tunesmith.data.examples import Message, UnpairedPreferenceExample as Unpaired
    from tunesmith.data.examples import one_answer_per_prompt
    from tunesmith.data.pipeline import eval_conversations

    p, q = [Message("user", "2+2?")], [Message("user", "3+4?")]
    good = Unpaired(p, [Message("assistant", "4")], True, "4")
    bad = Unpaired(p, [Message("assistant", "5")], False, "4")
    other = Unpaired(q, [Message("assistant", "8")], False, "7")
    assert one_answer_per_prompt([good, bad, other]) == [good, other]
    assert one_answer_per_prompt([bad, other, good]) == [good, other]  # the desirable answer, in the first place
    asked = eval_conversations([bad, good, other], 10)
    assert [(c.messages, c.reference) for c in asked] == [(p + good.completion, "4"), (q, "7")]
