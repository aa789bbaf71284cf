"""FineTuner's keyword API: keywords -> config keys, TrainingArguments, task types, quantization,
lazy construction, and a tiny Llama through train -> generate -> save -> load -> evaluate, with a
custom preprocessor and inference handler."""

import copy
import json

import pytest

from tunesmith.api import FineTuner
from tunesmith.config import TrainConfig, load_config
from tunesmith.errors import ConfigError


@pytest.fixture(scope="module")
def words_file(tmp_path_factory):
    rows = [{"instruction": f"Add {a} and {b}.", "output": f"sum is {a + b}"} for a in range(6) for b in range(4)]
    path = tmp_path_factory.mktemp("data") / "words.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def tiny_tuner(model_dir, data_file, **kwargs):
    trainer = {"train.max_steps": 4, "train.batch_size": 4, "train.lr": 1e-2, "train.logging_steps": 1,
               "train.precision": "fp32", "eval.before_after": "off", "eval.max_new_tokens": 6,
               "data.format": "alpaca", "data.eval_split": 0.25, "data.cache": False}
    return FineTuner(str(model_dir), dataset_name=str(data_file), device="cpu", trainer_config=trainer, **kwargs)


# -- keywords -> config ---------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, key, value", [
    ({"model_id": "gpt2"}, "model.name_or_path", "gpt2"),
    ({"device": "cpu"}, "model.device", "cpu"),
    ({"dataset_name": "arith"}, "data.train", "arith"),
    ({"lora_r": 4}, "peft.r", 4),
    ({"lora_alpha": 8}, "peft.alpha", 8),
    ({"lora_target_modules": ["q_proj", "v_proj"]}, "peft.target_modules", ["q_proj", "v_proj"]),
    ({}, "peft.target_modules", ["all-linear"]),
    ({"lora_bias": "all"}, "peft.bias", "all"),
    ({"max_length": 128}, "data.max_length", 128),
    ({"trainer_config": {"lr": 1e-3}}, "train.lr", 1e-3),
])
def test_each_keyword_sets_its_config_key(kwargs, key, value):
    cfg = FineTuner(**kwargs).config
    section, leaf = key.split(".")
    assert getattr(getattr(cfg, section), leaf) == value


def test_config_object_is_kept_and_keywords_do_not_mutate_it():
    cfg = load_config(overrides=["peft.r=8"])
    assert FineTuner(cfg).config is cfg and FineTuner.from_config(cfg).config is cfg
    assert FineTuner(config=cfg).config.peft.r == 8  # defaults of the keywords keep the base values
    tuned = FineTuner(cfg, lora_alpha=4).config
    assert (tuned.peft.r, tuned.peft.alpha, cfg.peft.alpha) == (8, 4, 32)
    assert FineTuner(trainer_config=cfg).config is cfg


@pytest.mark.parametrize("kwargs, match", [
    ({"device": "tpu"}, "model.device"), ({"lora_bias": "some"}, "peft.bias"),
    ({"model_id": "./no/such/folder"}, "model_id"),
    ({"trainer_config": 3}, "trainer_config"), ({"trainer_config": {"lrate": 1}}, "lrate"),
    ({"inference_handler": object()}, "inference_handler"), ({"preprocessor": "upper"}, "preprocessor"),
])
def test_bad_keywords_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        FineTuner(**kwargs)


def test_missing_dataset_file_fails_in_the_constructor():
    from tunesmith.errors import DataError

    with pytest.raises(DataError, match="data.train"):  # as FineTuner(cfg) always did
        FineTuner(dataset_name="./missing.jsonl")


@pytest.mark.parametrize("task_type, task", [
    ("CAUSAL_LM", "causal_lm"), ("SEQ_CLS", "sequence_classification"), ("SEQ_2_SEQ_LM", "seq2seq"),
    ("causal_lm", "causal_lm"), (None, "auto"),
])
def test_lora_task_type_forms(task_type, task):
    assert FineTuner(lora_task_type=task_type).config.model.task == task


def test_lora_task_type_peft_enum_and_bad_name():
    from peft import TaskType

    assert FineTuner(lora_task_type=TaskType.SEQ_CLS).config.model.task == "sequence_classification"
    with pytest.raises(ConfigError, match="lora_task_type"):
        FineTuner(lora_task_type="TOKEN_CLS")


def test_quantize_and_quantization_config():
    assert FineTuner(quantize=True).config.peft.method == "qlora"
    q = FineTuner(quantization_config={"bnb_4bit_quant_type": "fp4", "bnb_4bit_use_double_quant": False,
                                       "compute_dtype": "float16"}).config.peft
    assert (q.method, q.quantization.quant_type, q.quantization.double_quant, q.quantization.compute_dtype) == \
        ("qlora", "fp4", False, "float16")
    assert FineTuner(quantization_config={"load_in_8bit": True}).config.peft.method == "int8"
    with pytest.raises(ConfigError, match="llm_int8_threshold"):
        FineTuner(quantization_config={"llm_int8_threshold": 5.0})
    with pytest.raises(ConfigError, match="quant_type"):
        FineTuner(quantization_config={"quant_type": "int3"})


def test_training_arguments_are_mapped(tmp_path):
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path / "o"), learning_rate=1e-3, num_train_epochs=2,
                             per_device_train_batch_size=2, gradient_accumulation_steps=4,
                             lr_scheduler_type="cosine", warmup_steps=0.1, weight_decay=0.01, seed=7,
                             logging_steps=5, save_steps=50, eval_strategy="steps", eval_steps=20, report_to="none")
    cfg = FineTuner(trainer_config=args).config
    t = cfg.train
    assert (t.lr, t.epochs, t.batch_size, t.grad_accum, t.scheduler, t.warmup_ratio, t.weight_decay, t.seed,
            t.logging_steps, t.save_steps, t.eval_steps) == (1e-3, 2.0, 2, 4, "cosine", 0.1, 0.01, 7, 5, 50, 20)
    assert cfg.output_dir == str(tmp_path / "o")


def test_training_arguments_unmapped_fields_are_refused(tmp_path):
    from transformers import TrainingArguments

    with pytest.raises(ConfigError, match="label_smoothing_factor"):
        FineTuner(trainer_config=TrainingArguments(output_dir=str(tmp_path), label_smoothing_factor=0.1))
    with pytest.raises(ConfigError, match="save_strategy"):
        FineTuner(trainer_config=TrainingArguments(output_dir=str(tmp_path), save_strategy="epoch"))


def test_constructor_loads_nothing(monkeypatch, tiny_llama_dir, words_file):
    import tunesmith.models.loading as loading

    def refuse(*args, **kwargs):
        raise AssertionError("the constructor must not load models or tokenizers")

    for name in ("load_model", "load_tokenizer", "load_model_config"):
        monkeypatch.setattr(loading, name, refuse)
    tuner = FineTuner(str(tiny_llama_dir), dataset_name=str(words_file), lora_r=4, quantize=True)
    assert tuner.model is None and tuner.tokenizer is None


def test_package_exports_are_lazy():
    import tunesmith

    assert tunesmith.FineTuner is FineTuner and tunesmith.TrainConfig is TrainConfig
    assert hasattr(tunesmith.InferenceHandler, "generate") and callable(tunesmith.ChatTemplatePreprocessor())


# -- a tiny Llama ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_llama_dir, words_file):
    tuner = tiny_tuner(tiny_llama_dir, words_file, lora_r=4, lora_alpha=8)
    result = tuner.train(output_dir=tmp_path_factory.mktemp("api") / "run", num_train_epochs=1)
    return tuner, result


def test_train_generate_save_load_round_trip(trained, tmp_path):
    from tunesmith.cli.main import main

    tuner, result = trained
    assert tuner.config.output_dir == str(result.run_dir) and tuner.model.peft_config["default"].r == 4
    before = tuner.generate("Add 1 and 2.")
    assert isinstance(before, str) and tuner("Add 1 and 2.") == before
    assert tuner.generate(["Add 1 and 2.", "Add 3 and 1."], max_length=3)[0] == tuner.generate("Add 1 and 2.", 3)
    saved = tuner.save(tmp_path / "export")
    assert {"adapter_model.safetensors", "config.yaml", "run.json", "tokenizer.json"} <= {p.name for p in saved.iterdir()}
    loaded = FineTuner.load(saved)
    assert loaded.task == "causal_lm" and loaded.config.peft.r == 4
    assert loaded.generate("Add 1 and 2.") == before
    assert main(["generate", str(saved), "Add 1 and 2.", "--max-new-tokens", "6"]) == 0


def test_evaluate_on_a_tiny_run(trained):
    tuner, _ = trained
    result = tuner.evaluate()
    assert result["metric"] == "perplexity" and result["tokens"] > 0 and result["loss"] > 0
    exact = copy.copy(tuner)
    exact.config = copy.deepcopy(tuner.config)
    exact.config.eval.metric = "exact_match"  # reference answers: the held-out assistant turns
    em = exact.evaluate()
    assert em["metric"] == "exact_match" and em["total"] == 6 and 0 <= em["accuracy"] <= 1


def test_generate_loads_the_base_model_lazily(tiny_llama_dir, words_file):
    tuner = tiny_tuner(tiny_llama_dir, words_file)
    assert isinstance(tuner.generate("Hi", max_length=2), str)
    assert tuner.model is not None and not hasattr(tuner.model, "peft_config")


class UpperAnswers:
    """Uppercases every assistant turn, then tokenizes as usual."""

    def __call__(self, tokenizer, examples, task, settings):
        from tunesmith.data.preprocessor import ChatTemplatePreprocessor

        examples = copy.deepcopy(examples)
        for example in examples:
            for message in example.messages:
                if message.role == "assistant":
                    message.content = message.content.upper()
        return ChatTemplatePreprocessor()(tokenizer, examples, task, settings)


class Reversed:
    """The default handler's answers, reversed."""

    def generate(self, model, tokenizer, prompts, settings):
        from tunesmith.inference.handler import ChatInferenceHandler

        return [t[::-1] for t in ChatInferenceHandler().generate(model, tokenizer, prompts, settings)]


def test_custom_preprocessor(tiny_llama_dir, words_file):
    from tunesmith.data.preprocessor import Preprocessor

    assert isinstance(UpperAnswers(), Preprocessor)
    tuner = tiny_tuner(tiny_llama_dir, words_file, preprocessor=UpperAnswers())
    bundle = tuner.preprocess_data()
    row = bundle.train[0]
    trained_text = tuner.tokenizer.decode([t for t, lab in zip(row["input_ids"], row["labels"]) if lab != -100])
    assert "SUM IS" in trained_text and "sum is" not in trained_text


def test_custom_inference_handler(trained):
    from tunesmith.inference.handler import InferenceHandler

    tuner, _ = trained
    assert isinstance(Reversed(), InferenceHandler)
    custom = copy.copy(tuner)
    custom.inference_handler = Reversed()
    assert custom.generate("Add 1 and 2.") == tuner.generate("Add 1 and 2.")[::-1]
    built = FineTuner(tuner.config, inference_handler=Reversed())
    assert isinstance(built.inference_handler, Reversed)
