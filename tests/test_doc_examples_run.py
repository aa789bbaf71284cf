"""Every ``>>>`` example in a docstring of ``src/tunesmith`` runs and prints what it shows.

Examples that need a model, files or a network are written as prose (``call`` -> ``result``)
instead, so the ones written as ``>>>`` stay fast and offline.
"""

import doctest
import importlib
from pathlib import Path

import pytest

import tunesmith

ROOT = Path(tunesmith.__file__).parent


def modules_with_examples() -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        if ">>>" in path.read_text():
            parts = path.relative_to(ROOT.parent).with_suffix("").parts
            found.append(".".join(parts).removesuffix(".__init__"))
    return found


def test_some_modules_have_runnable_examples():
    assert len(modules_with_examples()) >= 10


@pytest.mark.parametrize("name", modules_with_examples())
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.attempted > 0
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} docstring examples failed"
