"""Dataset handler classes (the QADataset pattern): built with the tokenizer and template settings,
their items become pre-tokenized rows."""

import json

import pytest

from tunesmith.config.schema import DataConfig
from tunesmith.data.builtin import DATASET_REGISTRY
from tunesmith.data.handlers import QADataset
from tunesmith.api.data_entry import build_datasets, check_data_config
from tunesmith.errors import ConfigError, DataError


@pytest.fixture
def qa_file(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps({"q": f"Name {i}?", "a": f"N{i}"}) for i in range(5)))
    return path


def test_qa_dataset_items_train_only_the_answer(smol_tokenizer, qa_file):
    items = QADataset({"path": str(qa_file)}, {"apply_chat_template": True}, smol_tokenizer, question_key="q",
                      answer_key="a", max_length=64)
    assert len(items) == 5
    item = items[0]
    assert len(item["input_ids"]) == len(item["labels"]) == len(item["attention_mask"])
    trained = [t for t in item["labels"] if t != -100]
    assert smol_tokenizer.decode(trained) == "N0<|im_end|>"


def test_qa_dataset_refuses_what_it_cannot_do(smol_tokenizer, qa_file):
    with pytest.raises(ConfigError, match="predict_with_generate"):
        QADataset({"path": str(qa_file)}, None, smol_tokenizer, predict_with_generate=True)
    with pytest.raises(ConfigError, match="hf_args"):
        QADataset({"name": "x"}, None, smol_tokenizer)
    with pytest.raises(DataError, match="does not fit in max_length=3"):
        QADataset({"path": str(qa_file)}, None, smol_tokenizer, question_key="q", answer_key="a", max_length=3)[0]


def test_a_registered_handler_class_goes_through_the_pipeline(smol_tokenizer, qa_file):
    class Pairs:
        """Two tokenized items, using the tokenizer tunesmith hands over."""

        def __init__(self, tokenizer, template_args, word="hello"):
            self.ids = tokenizer(word, add_special_tokens=False)["input_ids"]
            self.template_args = template_args

        def __len__(self):
            return 2

        def __getitem__(self, index):
            return {"input_ids": self.ids * (index + 1)}

    DATASET_REGISTRY["pairs-handler"] = Pairs
    try:
        cfg = DataConfig(train="pairs-handler", dataset_args={"word": "cat"}, cache=False)
        check_data_config(cfg)
        bundle = build_datasets(cfg, smol_tokenizer, task="causal_lm")
        ids = smol_tokenizer("cat", add_special_tokens=False)["input_ids"]
        assert [row["input_ids"] for row in bundle] == [ids, ids * 2]
        assert bundle.info.format == "tokenized" and bundle.eval is None
        with pytest.raises(ConfigError, match="'colour' is not a parameter"):
            check_data_config(DataConfig(train="pairs-handler", dataset_args={"colour": "red"}))
        with pytest.raises(DataError, match="needs the model's tokenizer"):
            from tunesmith.api.data_entry import load_conversations

            load_conversations(cfg, 0)
    finally:
        DATASET_REGISTRY.remove("pairs-handler")
