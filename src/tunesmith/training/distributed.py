"""Runs on several processes: ``torchrun --nproc_per_node N -m tunesmith train ...`` or
``accelerate launch -m tunesmith train ...``. One process is an ordinary run.

The launcher sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; every process loads the model and
data, and the Trainer splits each global batch between them. Only the main process (rank 0)
prepares and writes the run directory, prints, logs and evaluates; the others wait for it where
they must (``main_process_first``) and receive what it decided (``share_from_main``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from datetime import timedelta
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")


def world_size() -> int:
    """Number of processes in the run (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global index (0 without a launcher)."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """True on rank 0, which alone writes files and prints."""
    return rank() == 0


def process_device(device: str) -> str:
    """``cuda`` becomes this process's own GPU (``cuda:LOCAL_RANK``) in a multi-process run."""
    if world_size() > 1 and device == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def init_distributed(device: str, backend: str, timeout_s: int = 1800) -> None:
    """Join the process group early (before data and model loading), so that processes can wait
    for one another; the Trainer reuses this group. Does nothing in a one-process run.
    ``backend``: ``nccl`` or ``gloo``, chosen by the run (``tunesmith.api.choices.runtime``)."""
    if world_size() < 2:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))


def _group_ready() -> bool:
    if world_size() < 2:
        return False
    import torch.distributed as dist

    return dist.is_initialized()


def barrier() -> None:
    """Wait until every process gets here (no-op in a one-process run)."""
    if _group_ready():
        import torch.distributed as dist

        dist.barrier()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """The main process runs the block first (e.g. fills the tokenized-data cache or converts a
    GGUF file once); the others run it after, and find the work done."""
    if not is_main_process():
        barrier()
    try:
        yield
    finally:
        if is_main_process():
            barrier()


def share_from_main(make: Callable[[], T]) -> T:
    """Run ``make`` on the main process and return its result on every process.

    An exception on the main process is raised on every process (with the same message), so no
    process is left waiting for a value that will never come.
    """
    if not _group_ready():
        return make()
    import torch.distributed as dist

    payload: list[Any] = [None]
    if is_main_process():
        try:
            payload[0] = ("ok", make())
        except Exception as err:  # noqa: BLE001 - re-raised below, on every process
            payload[0] = ("error", err)
    dist.broadcast_object_list(payload, src=0)
    status, value = payload[0]
    if status == "error":
        raise value
    return value


def quiet_replica() -> None:
    """On processes other than the main one: no prints and no progress bars (errors still show)."""
    if is_main_process():
        return
    sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
