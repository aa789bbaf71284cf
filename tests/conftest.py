"""Shared fixtures: the packaged tokenizer and tiny random models built from config."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def smol_tokenizer_dir() -> Path:
    """The packaged SmolLM2 model folder (converted from GGUF once, then cached); on a machine without
    the packaged model (the GPU check, bench/gpu), ``TUNESMITH_TEST_TOKENIZER`` names a folder holding
    its tokenizer (``bench/gpu/make_models.py tokenizer``), which is all the tiny models take from it."""
    from tunesmith.models.loading import resolve_model_path

    if os.environ.get("TUNESMITH_TEST_TOKENIZER"):
        return Path(os.environ["TUNESMITH_TEST_TOKENIZER"])
    return Path(resolve_model_path("smollm2-135m-instruct"))


@pytest.fixture(scope="session")
def smol_tokenizer(smol_tokenizer_dir):
    from tunesmith.models.loading import load_tokenizer

    return load_tokenizer(str(smol_tokenizer_dir))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smol_tokenizer) -> Path:
    """A 2-layer Llama with hidden size 32 and the packaged tokenizer, saved as a model folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(smol_tokenizer), max_position_embeddings=512,
                         bos_token_id=smol_tokenizer.bos_token_id, eos_token_id=smol_tokenizer.eos_token_id,
                         pad_token_id=smol_tokenizer.pad_token_id, tie_word_embeddings=True)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    smol_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def chatty_llama_dir(tmp_path_factory, smol_tokenizer) -> Path:
    """Like ``tiny_llama_dir`` but with larger random weights (initializer_range 0.2), so greedy
    decoding writes varied words instead of repeating one token: for tests that read generated text."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(smol_tokenizer), max_position_embeddings=512,
                         initializer_range=0.2, bos_token_id=smol_tokenizer.bos_token_id,
                         eos_token_id=smol_tokenizer.eos_token_id, pad_token_id=smol_tokenizer.pad_token_id,
                         tie_word_embeddings=True)
    folder = tmp_path_factory.mktemp("chatty-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    smol_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory, smol_tokenizer) -> Path:
    """A 2-layer GPT-2 base model (hidden size 32) whose tokenizer has no chat template, like ``gpt2``.

    Its context window is 64 positions (GPT-2's is 1024), so a long generation stops after a few
    dozen tokens."""
    import copy

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    tokenizer = copy.deepcopy(smol_tokenizer)
    tokenizer.chat_template = None
    config = GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64, vocab_size=len(tokenizer),
                        initializer_range=0.2, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 1-layer BERT classifier (hidden size 32) with the packaged MiniLM tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from tunesmith.models.loading import load_tokenizer

    tokenizer = load_tokenizer("minilm-l6")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    folder = tmp_path_factory.mktemp("tiny-bert")
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def alpaca_file(tmp_path) -> Path:
    rows = [{"instruction": f"Add {a} and {b}.", "input": "", "output": f"{a} + {b} = {a + b}\n#### {a + b}"}
            for a in range(2, 8) for b in range(3, 6)]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def serve_on_localhost():
    """``serve_on_localhost(app) -> "http://127.0.0.1:PORT"``: the app under uvicorn on a free port of
    this machine, in a thread, until the test module ends."""
    import socket
    import threading
    import time

    import uvicorn

    servers = []

    def start(app) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.time() + 60
        while not server.started:
            if time.time() > deadline or not thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=30)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need CUDA: skipped (with the reason shown) where there is none."""
    gpu_tests = [item for item in items if "gpu" in item.keywords]
    if not gpu_tests:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in gpu_tests:
        item.add_marker(skip)
