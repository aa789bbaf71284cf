"""The code examples of the five design documents tunesmith was built from, run as tests.

Each example is kept as written, except where a model or dataset must be local: ``"gpt2"`` is a
tiny GPT-2 without a chat template, ``"bert-base-uncased"`` a tiny BERT with the packaged MiniLM
tokenizer, hub datasets small local files, and ``"cuda"`` / ``"gpu"`` the CPU when the machine
has no GPU. docs/coming-from-the-design-documents.md maps each document's names to ours.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

import tunesmith
from tunesmith import FineTuner

CUDA = torch.cuda.is_available()
# Examples 1 and 2 quantize the model to 4 bits, which needs bitsandbytes (an optional dependency).
needs_bitsandbytes = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                                        reason="4-bit quantization needs bitsandbytes")
DEVICE = "cuda" if CUDA else "cpu"  # the documents write device="cuda"


@pytest.fixture
def dialogue_file(tmp_path) -> Path:
    """A small stand-in for the documents' "dialogue" dataset: 8 question / answer rows."""
    rows = [{"question": f"Tell me about the number {i}.", "answer": f"{i} comes after {i - 1}."} for i in range(1, 9)]
    path = tmp_path / "dialogue.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return path


# -- 001: the FineTuner class ---------------------------------------------------------------------
@needs_bitsandbytes
def test_001_example_1_train_for_three_epochs_then_generate(tiny_gpt2_dir, dialogue_file, tmp_path,
                                                             monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    gpt2, dialogue = str(tiny_gpt2_dir), str(dialogue_file)

    # Initialize the FineTuner
    finetuner = FineTuner(
        model_id=gpt2,
        device=DEVICE,
        dataset_name=dialogue,
        lora_r=16,
        lora_alpha=32,
        max_length=1000,
        quantize=True
    )

    # Preprocess the data
    tokenized_dataset = finetuner.preprocess_data()
    assert len(tokenized_dataset) == 8 and "input_ids" in tokenized_dataset[0]

    # Train the model
    output_dir = "./trained_model"
    num_train_epochs = 3
    result = finetuner.train(output_dir, num_train_epochs)

    # Generate text
    prompt_text = "Once upon a time"
    generated_text = finetuner.generate(prompt_text)
    print(generated_text)

    record = json.loads((Path(result.run_dir) / "run.json").read_text())
    assert record["global_step"] == 3  # 3 epochs of one batch: the epochs asked for are the epochs run
    assert Path(result.run_dir).resolve() == (tmp_path / "trained_model").resolve()
    assert isinstance(generated_text, str)
    assert finetuner.config.eval.max_new_tokens == 1000  # max_length is also the generation length


@needs_bitsandbytes
def test_001_example_2_custom_quantization_config(tiny_gpt2_dir):
    quantization_config = {
        'load_in_4bit': True,
        'bnb_4bit_use_double_quant': True,
        'bnb_4bit_quant_type': "nf4",
        'bnb_4bit_compute_dtype': torch.bfloat16
    }

    finetuner = FineTuner(
        model_id=str(tiny_gpt2_dir),
        device=DEVICE,
        dataset_name="arith",
        max_length=500,
        quantize=True,
        quantization_config=quantization_config
    )
    # Generate text
    prompt_text = "Once upon a time"
    generated_text = finetuner.generate(prompt_text)
    print(generated_text)

    q = finetuner.config.peft.quantization
    assert (finetuner.config.peft.method, q.quant_type, q.double_quant, q.compute_dtype) == (
        "qlora", "nf4", True, "bfloat16")
    assert isinstance(generated_text, str) and finetuner.config.eval.max_new_tokens == 500


def test_001_example_3_default_trainer_config(tiny_gpt2_dir, dialogue_file, tmp_path, monkeypatch):
    from tunesmith import DefaultTrainerConfig

    monkeypatch.chdir(tmp_path)
    trainer_config = DefaultTrainerConfig(
        output_dir="./trained_model",
        num_train_epochs=3,
        per_device_train_batch_size=8,
        save_steps=10_000,
        save_total_limit=2,
    )

    finetuner = FineTuner(
        model_id=str(tiny_gpt2_dir),
        device=DEVICE,
        dataset_name=str(dialogue_file),
        max_length=1000,
        trainer_config=trainer_config
    )

    # Train the model
    result = finetuner.train()

    # Generate text
    prompt_text = "Once upon a time"
    generated_text = finetuner.generate(prompt_text)
    print(generated_text)

    t = finetuner.config.train
    assert (t.epochs, t.max_steps, t.batch_size, t.save_steps, t.save_limit) == (3.0, -1, 8, 10_000, 2)
    assert json.loads((Path(result.run_dir) / "run.json").read_text())["global_step"] == 3
    assert Path(result.run_dir).resolve() == (tmp_path / "trained_model").resolve()


def test_001_the_same_trainer_config_as_training_arguments(tmp_path):
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path / "trained_model"), num_train_epochs=3,
                             per_device_train_batch_size=8, save_steps=10_000, save_total_limit=2, warmup_steps=5,
                             save_only_model=True, bf16_full_eval=True, use_cpu=not CUDA)
    cfg = FineTuner("gpt2", trainer_config=args).config
    t = cfg.train
    assert cfg.model.device == ("auto" if CUDA else "cpu")  # use_cpu=True is model.device=cpu
    assert (t.epochs, t.max_steps, t.batch_size, t.save_steps, t.save_limit, t.warmup_steps) == (
        3.0, -1, 8, 10_000, 2, 5)
    assert t.save_only_model and t.bf16_full_eval


def test_001_default_trainer_config_checks_its_keys_when_built():
    from tunesmith import DefaultTrainerConfig
    from tunesmith.errors import ConfigError

    with pytest.raises(ConfigError, match="num_train_epoch"):
        DefaultTrainerConfig(num_train_epoch=3)


# -- 000: data utilities --------------------------------------------------------------------------
def test_000_dataset_config_collator_and_device_aware_loading(tiny_llama_dir, tmp_path):
    from tunesmith import device_aware_data_loading, generate_dataset_config, get_custom_data_collator

    rows = [{"instruction": f"Add {a} and {b}.", "output": str(a + b)} for a in range(8) for b in range(5)]
    custom_dataset = tmp_path / "custom_dataset.jsonl"
    custom_dataset.write_text("\n".join(json.dumps(r) for r in rows))

    # Generate dataset configuration
    dataset_config = generate_dataset_config(
        dataset_name=str(custom_dataset),
        preprocessing_steps=["tokenization", "padding"],
        custom_config={"batch_size": 32, "model": str(tiny_llama_dir), "data.packing": "none"}
    )

    # Define custom data collator
    custom_data_collator = get_custom_data_collator(
        dataset_config,
        batch_size=32,
        padding=True
    )

    # Load preprocessed dataset onto target device
    loader = device_aware_data_loading(
        dataset_config,
        custom_data_collator,
        target_device="gpu" if CUDA else "cpu"
    )

    batch = next(iter(loader))
    assert batch["input_ids"].shape[0] == 32 and batch["labels"].shape == batch["input_ids"].shape
    assert loader.pin_memory is CUDA and dataset_config.model.device == ("cuda" if CUDA else "cpu")
    if not CUDA:
        from tunesmith.errors import ConfigError

        with pytest.raises(ConfigError, match="model.device: 'cuda'"):  # "gpu" is cuda, which is not here
            device_aware_data_loading(dataset_config, custom_data_collator, target_device="gpu")


def test_000_unknown_preprocessing_step_and_padding_name_the_alternative():
    from tunesmith import generate_dataset_config, get_custom_data_collator
    from tunesmith.errors import ConfigError

    with pytest.raises(ConfigError, match="Known: .*truncation"):
        generate_dataset_config("arith", ["tokenise"])
    cfg = generate_dataset_config("arith", ["truncation", "packing"])
    assert (cfg.data.truncation, cfg.data.packing) == ("truncate_end", "pack")
    with pytest.raises(ConfigError, match="data.packing=padding_free"):
        get_custom_data_collator(cfg, padding=False)


# -- 002: components (model, dataset, trainer YAML; registries) ------------------------------------
MODEL_YAML = """
model_args: # AutoModelForCausalLM
  pretrained_model_name_or_path: "{model}" # replace to load local models
  attn_implementation: 'sdpa'
  torch_dtype: bfloat16

tokenizer_args: # AutoTokenizer
  pretrained_model_name_or_path: "{model}"

template_args:
  apply_chat_template: False
  user_start_tag: "<|start_header_id|>system<|end_header_id|>\\n\\nYou are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\\n\\n"
  user_end_tag: "<|eot_id|>"
  asst_tag: "<|start_header_id|>assistant<|end_header_id|>\\n\\n"
"""

DATASET_YAML = """
data:
  TOFU_QA_FULL: # data.tofu.QADataset
    args:
      hf_args: # load_dataset
        name: null
        split: "train"
        path: "{path}"

      question_key: "question"
      answer_key: "answer"
      max_length: 512
"""

TRAINER_YAML = """
paths:
  train_output_dir: {out}
trainer:
  name: finetune # Train/finetune
  args: # transformers.Trainer
    per_device_train_batch_size: 2
    per_device_eval_batch_size: 16
    gradient_accumulation_steps: 4
    warmup_steps: 5
    learning_rate: 1e-5
    bf16: {bf16}
    bf16_full_eval: {bf16}
    logging_steps: 5
    output_dir: ${{paths.train_output_dir}}
    logging_dir: ${{trainer.args.output_dir}}/logs
    optim: {optim}
    save_strategy: epoch
    save_only_model: True
    weight_decay: 0.01
    do_train: True
    do_eval: True
    eval_strategy: epoch
    num_train_epochs: 10
    seed: 0
"""


def test_002_model_and_trainer_yaml_shapes(tiny_llama_dir, tmp_path):
    from tunesmith.config import load_config

    path = tmp_path / "experiment.yaml"
    path.write_text(MODEL_YAML.format(model=tiny_llama_dir)
                    + TRAINER_YAML.format(out=tmp_path / "out", bf16="True", optim="paged_adamw_32bit"))
    cfg = load_config(path)
    assert (cfg.model.name_or_path, cfg.model.dtype, cfg.train.attention) == (str(tiny_llama_dir), "bfloat16", "sdpa")
    assert cfg.data.template == "tags" and cfg.data.tags.user_end == "<|eot_id|>"
    assert cfg.data.tags.assistant_start == "<|start_header_id|>assistant<|end_header_id|>\n\n"
    t = cfg.train
    assert (t.trainer, t.batch_size, cfg.eval.batch_size, t.grad_accum, t.warmup_steps, t.lr) == (
        "auto", 2, 16, 4, 5, 1e-5)
    assert (t.precision, t.bf16_full_eval, t.logging_steps, t.optimizer, t.save_strategy, t.save_only_model) == (
        "bf16", True, 5, "paged_adamw", "epoch", True)
    assert (t.weight_decay, t.eval_strategy, t.epochs, t.max_steps, t.seed) == (0.01, "epoch", 10.0, -1, 0)
    assert cfg.output_dir == str(tmp_path / "out")  # ${paths.train_output_dir}
    assert t.logging_dir == str(tmp_path / "out" / "logs") and "tensorboard" in t.log_to  # ${trainer.args.output_dir}


def test_002_qa_dataset_handler_registered_by_name_trains(tiny_llama_dir, tmp_path):
    from tunesmith import DATASET_REGISTRY, QADataset

    rows = [{"question": f"What is {a} plus {a}?", "answer": str(2 * a)} for a in range(12)]
    qa = tmp_path / "tofu.jsonl"
    qa.write_text("\n".join(json.dumps(r) for r in rows))
    DATASET_REGISTRY["TOFU_QA_FULL"] = QADataset  # _register_data("TOFU_QA_FULL", QADataset)
    try:
        _train_on_the_registered_qa_dataset(tiny_llama_dir, tmp_path, qa)
    finally:
        DATASET_REGISTRY.remove("TOFU_QA_FULL")


def _train_on_the_registered_qa_dataset(tiny_llama_dir, tmp_path, qa):
    from tunesmith.config import load_config

    path = tmp_path / "experiment.yaml"
    # TensorBoard is optional: this run logs to metrics.jsonl only (no logging_dir), in fp32 with AdamW.
    trainer = TRAINER_YAML.format(out=tmp_path / "out", bf16="False", optim="adamw_torch")
    trainer = trainer.replace("    logging_dir: ${trainer.args.output_dir}/logs\n", "")
    path.write_text(MODEL_YAML.format(model=tiny_llama_dir) + DATASET_YAML.format(path=qa) + trainer)
    # The document's trainer evaluates every epoch on an eval set this one-file example does not
    # have; tunesmith refuses evaluation without held-out data, so the run turns it off.
    cfg = load_config(path, ["train.epochs=1", "model.device=cpu", "data.cache=false", "train.eval_strategy=no"])
    assert cfg.data.train == "TOFU_QA_FULL" and cfg.data.dataset_args["question_key"] == "question"
    tuner = FineTuner(cfg)
    bundle = tuner.preprocess_data()
    assert len(bundle) == 12 and bundle.info.format == "tokenized"
    first = tuner.tokenizer.decode(bundle[0]["input_ids"])
    assert first.startswith("<|start_header_id|>system") and "What is 0 plus 0?<|eot_id|>" in first
    trained = [t for t in bundle[0]["labels"] if t != -100]
    assert tuner.tokenizer.decode(trained) == "0" + tuner.tokenizer.eos_token  # only the answer is trained
    result = tuner.train()
    assert json.loads((Path(result.run_dir) / "run.json").read_text())["global_step"] == 2  # 12 rows / (2 x 4)


def test_002_trainer_names_and_trainer_registry(tiny_llama_dir):
    from transformers import Trainer

    from tunesmith import TRAINER_REGISTRY
    from tunesmith.config import load_config

    for given, ours in (("finetune", "auto"), ("GradAscent", "grad_ascent"), ("GradDiff", "grad_diff"),
                        ("NPO", "npo")):
        assert load_config(overrides=[f"train.trainer={given}"]).train.trainer == ours

    class GradAscentTrainer(Trainer):
        """Raises the loss of the training set: the negated language-model loss."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
            return (-loss, outputs) if return_outputs else -loss

    from tunesmith.errors import ConfigError

    with pytest.raises(ConfigError, match="'GradAscent' already means tunesmith's 'grad_ascent'"):
        TRAINER_REGISTRY["GradAscent"] = GradAscentTrainer  # _register_trainer("GradAscent", GradAscentTrainer)
    TRAINER_REGISTRY["my_grad_ascent"] = GradAscentTrainer
    try:
        tuner = FineTuner(str(tiny_llama_dir), "cpu", "arith", trainer_config={
            "train.trainer": "my_grad_ascent", "max_steps": 2, "batch_size": 2, "data.max_samples": 4,
            "eval.before_after": "off", "data.cache": False, "train.precision": "fp32"})
        result = tuner.train()
        assert result.train_loss < 0  # the subclass's loss was the one optimised
    finally:
        TRAINER_REGISTRY.remove("my_grad_ascent")


@pytest.mark.parametrize("yaml_text, match", [
    ("trainer:\n  name: finetune\n  args:\n    deepspeed: ds.json\n",
     "trainer.args.deepspeed .*train.distributed.strategy=deepspeed"),
    ("trainer:\n  name: finetune\n  args:\n    label_smoothing_factor: 0.1\n",
     "trainer.args.label_smoothing_factor .*no tunesmith equivalent"),
    ("trainer:\n  args:\n    do_train: false\n", "tunesmith eval"),
    ("model_args:\n  device_map: auto\n", "model_args.device_map .*pretrained_model_name_or_path"),
    ("trainer:\n  args:\n    output_dir: ${paths.nowhere}\n", r"\$\{paths"),
])
def test_002_a_key_without_equivalent_names_the_tunesmith_way(tmp_path, yaml_text, match):
    from tunesmith.config import load_config
    from tunesmith.errors import ConfigError

    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


# -- 003: fine-tuning with the Trainer and dynamic padding ------------------------------------------
def test_003_tokenize_pairs_and_pad_each_batch(tiny_bert_dir, tmp_path):
    from datasets import Dataset, DatasetDict
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    mdl_ckpt = str(tiny_bert_dir)  # 'bert-base-uncased'
    tokenizer = AutoTokenizer.from_pretrained(mdl_ckpt)
    model = AutoModelForSequenceClassification.from_pretrained(mdl_ckpt)
    sequences = ["I've been waiting for a HuggingFace course my whole life.", "This course is amazing!"]
    batch = tokenizer(sequences, truncation=True, padding=True, return_tensors='pt')
    batch['labels'] = torch.tensor([1, 1])
    optimizer = torch.optim.AdamW(model.parameters())
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()

    pairs = [("A cat sat on the mat.", "A cat was sitting on the mat.", 1), ("It rained all day.", "The sun shone.", 0),
             ("He bought a car.", "He purchased a vehicle.", 1), ("Prices rose.", "The team won the cup.", 0)] * 2
    rows = {"sentence1": [p[0] for p in pairs], "sentence2": [p[1] for p in pairs], "label": [p[2] for p in pairs],
            "idx": list(range(len(pairs)))}
    raw_ds = DatasetDict({"train": Dataset.from_dict(rows)})  # load_dataset('glue', 'mrpc')

    def func_tokenize(example):
        return tokenizer(example['sentence1'], example['sentence2'], truncation=True)

    tokenized_dataset = raw_ds.map(func_tokenize, batched=True)
    data_colator = DataCollatorWithPadding(tokenizer=tokenizer)
    samples = tokenized_dataset['train'][:8]
    samples = {k: v for k, v in samples.items() if k not in ['idx', 'sentence1', 'sentence2']}
    sample_batch = data_colator(samples)
    longest = max(len(x) for x in samples['input_ids'])
    assert {k: tuple(v.shape) for k, v in sample_batch.items()}["input_ids"] == (8, longest)

    # The same pairs through tunesmith, with that collator registered by name.
    data = tmp_path / "mrpc.jsonl"
    data.write_text("\n".join(json.dumps({"sentence1": a, "sentence2": b, "label": y}) for a, b, y in pairs))
    tunesmith.register_collator("with_padding", overwrite=True)(DataCollatorWithPadding)
    tuner = FineTuner(mdl_ckpt, "cpu", str(data), trainer_config={
        "data.collator": "with_padding", "max_steps": 2, "batch_size": 4, "eval.before_after": "off",
        "data.cache": False, "train.precision": "fp32"})
    tuner.train(tmp_path / "run")
    from tunesmith.data.collators import build_collator

    collator = build_collator("with_padding", "sequence_classification", tuner.tokenizer)
    assert isinstance(collator, DataCollatorWithPadding) and collator.tokenizer is tuner.tokenizer


# -- 004: the training configuration ----------------------------------------------------------------
@pytest.mark.slow  # the default job's 150 steps of 32 sequences: about two minutes on two CPU cores
def test_004_update_a_train_config_then_run_main(tiny_llama_dir, tmp_path, monkeypatch):
    from tunesmith import TrainConfig
    from tunesmith import main  # from QEfficient.cloud.finetune import main

    monkeypatch.chdir(tmp_path)
    rows = [{"instruction": f"Add {a} and {b}.", "output": str(a + b)} for a in range(8) for b in range(8)]
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows))

    # Create a training configuration
    train_config = TrainConfig()
    train_config.update_config({"model": str(tiny_llama_dir), "dataset": "rows.jsonl", "device": "cpu"})

    # Update the training configuration with custom settings
    train_config.update_config({"learning_rate": 5e-4, "batch_size": 32})

    # Fine-tune the model
    result = main(train_config=train_config)
    assert (train_config.train.lr, train_config.train.batch_size) == (5e-4, 32)
    # TrainConfig() is the packaged default job: 150 optimizer steps (the document sets no length).
    assert json.loads((Path(result.run_dir) / "run.json").read_text())["global_step"] == 150
