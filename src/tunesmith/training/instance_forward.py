"""A forward of tunesmith's own on some of a model's modules, for the length of a block.

Training-only speed paths (`tunesmith.training.fused_lora`, `tunesmith.training.compiled_layers`)
give chosen modules another forward while training and put the class's own back afterwards, so
evaluation, saving and merging see the model as loaded.
"""

from __future__ import annotations

import contextlib
import types
from typing import Any, Callable, Iterable, Iterator


@contextlib.contextmanager
def instance_forward(modules: Iterable[Any], forward: Callable[..., Any]) -> Iterator[int]:
    """While the block runs, each of ``modules`` that has no forward of its own instance runs
    ``forward`` (a function taking the module first); afterwards the class's forward is back. The
    function is bound as a method, so a copy of the model made meanwhile (a preference run's
    reference model) runs it on the copy's own modules. Yields how many modules were switched."""
    switched = [m for m in modules if "forward" not in vars(m)]
    for module in switched:
        module.forward = types.MethodType(forward, module)
    try:
        yield len(switched)
    finally:
        for module in switched:
            del module.forward
