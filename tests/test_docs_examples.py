"""Every ```python block in docs/python-api.md and docs/extending.md runs as written.

The examples name their model in a string literal (``"smollm2-135m-instruct"`` or
``"minilm-l6"``); here that literal is swapped for a tiny random model folder with the same
tokenizer, so each block trains in seconds. Everything else (step counts, sample caps) is
already tiny in the docs themselves. Each block runs in a fresh namespace, in its own temporary
working directory, with a private tunesmith cache.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
DOC_FILES = ("python-api.md", "extending.md")
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def python_blocks(name: str) -> list[str]:
    return BLOCK.findall((DOCS / name).read_text(encoding="utf-8"))


def cases() -> list:
    out = []
    for name in DOC_FILES:
        for index, code in enumerate(python_blocks(name)):
            marks = []
            if "quantization_config" in code or "quantize=True" in code:
                marks.append(pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                                                reason="QLoRA needs bitsandbytes"))
            out.append(pytest.param(name, index, code, id=f"{name.removesuffix('.md')}-block{index}", marks=marks))
    return out


def test_every_doc_has_examples():
    for name in DOC_FILES:
        assert python_blocks(name), f"docs/{name} has no python examples"


@pytest.mark.parametrize("doc, index, code", cases())
def test_doc_example_runs(doc, index, code, tmp_path, monkeypatch, tiny_llama_dir, tiny_bert_dir):
    code = code.replace('"smollm2-135m-instruct"', repr(str(tiny_llama_dir)))
    code = code.replace('"minilm-l6"', repr(str(tiny_bert_dir)))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    namespace = {"__name__": "__main__"}
    exec(compile(code, f"docs/{doc} (python block {index})", "exec"), namespace)
