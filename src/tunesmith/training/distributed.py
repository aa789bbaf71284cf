"""Runs on several processes: ``torchrun --nproc_per_node N -m tunesmith train ...`` or
``accelerate launch -m tunesmith train ...``. One process is an ordinary run.

The launcher sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; every process loads the model and
data, and the Trainer splits each global batch between them. Only the main process (rank 0)
prepares and writes the run directory, prints, logs and evaluates; the others wait for it where
they must (``main_process_first``) and receive what it decided (``share_from_main``).

When one process fails, every process stops within seconds: the failing one writes its error into the
launcher's key-value store (``announce_failure``) and into torchrun's error file (its summary shows
it), then exits; the launcher stops the others with SIGTERM. A process that learns of another's failure
(``peer_failure``) stops at once instead of saving a checkpoint, and says which process failed; a
watchdog thread ends a process the launcher's SIGTERM cannot reach (blocked in a collective whose peer
is gone) a few seconds later.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
from datetime import timedelta
from typing import Any, Callable, Iterator, Optional, TypeVar

T = TypeVar("T")

# Seconds the watchdog leaves a process to stop by itself (its signal handler, an error in a
# collective) after another process failed, before ending it: well under torchrun's 30 s SIGKILL.
PEER_FAILURE_GRACE_S = 5.0
WATCH_INTERVAL_S = 1.0  # how often the watchdog reads the failure flag (one small store read)


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
    _watch_for_peer_failure()


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
    """On processes other than the main one: warnings and errors only, no progress bars."""
    if is_main_process():
        return
    from tunesmith.config.logs import quiet_this_process

    quiet_this_process()  # the tunesmith logger passes on warnings and errors only
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


# -- one process fails: all stop ---------------------------------------------------------------------
_STORE: list[Any] = []  # the launcher's store client, made once (a signal handler may read it)


def rank_label() -> str:
    """``rank 1 of 2``: how messages name this process in a multi-process run."""
    return f"rank {rank()} of {world_size()}"


def _failure_key() -> str:
    # torchrun restarts the workers under a new restart count (--max-restarts): a new attempt starts clean.
    return f"tunesmith/failed/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"


def _connect() -> Optional[Any]:
    """A new client of the launcher's key-value store (``MASTER_ADDR:MASTER_PORT``, torchrun's agent
    store); None in a one-process run or when it cannot be reached."""
    if world_size() < 2 or "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        return None
    try:
        from torch.distributed import TCPStore

        return TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                        timeout=timedelta(seconds=5), wait_for_workers=False)
    except Exception:  # noqa: BLE001 - no store: the launcher's SIGTERM still stops the processes
        return None


def _store() -> Optional[Any]:
    """The main thread's store client, made once (the watchdog thread has its own connection)."""
    if not _STORE:
        _STORE.append(_connect())
    return _STORE[0]


def announce_failure(err: BaseException) -> None:
    """Tell the other processes that this one failed with ``err`` (the first failure is kept), and put
    ``err`` into torchrun's error file so its summary shows the cause. Call it inside ``except``."""
    store = _store()
    if store is not None:
        text = f"{rank_label()} failed: {type(err).__name__}: {err}"
        try:
            store.compare_set(_failure_key(), "", text)  # sets it only when no process failed before
        except Exception:  # noqa: BLE001 - the store is gone: the launcher stops the others anyway
            pass
    if os.environ.get("TORCHELASTIC_ERROR_FILE"):
        from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

        ErrorHandler().record_exception(err)


def peer_failure(store: Optional[Any] = None) -> Optional[str]:
    """``rank 1 of 2 failed: ValueError: ...`` when another process of the run failed; else None."""
    store = store if store is not None else _store()
    if store is None:
        return None
    try:
        key = _failure_key()
        if not store.check([key]):
            return None
        text = store.get(key).decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - the store is gone (its host process ended): nothing to read
        return None
    return None if text.startswith(f"rank {rank()} of ") else text


def stopped_by_peer(failure: str) -> Exception:
    """The error a process stops with when ``failure`` (``peer_failure()``) ended the run."""
    from tunesmith.errors import StoppedByPeer

    return StoppedByPeer(f"{rank_label()} stopped because {failure.split(':', 1)[0]} (its error is shown "
                         "once, by that process); no checkpoint was saved for this stop")


def _watch_for_peer_failure() -> None:
    """A daemon thread that reads the failure flag every second; when another process failed and this
    one has not stopped ``PEER_FAILURE_GRACE_S`` later (blocked in a collective the launcher's SIGTERM
    cannot interrupt), it says why on stderr and ends the process.

    The thread is stopped and its store client closed when the process exits normally (``atexit``):
    a store client still in use while the interpreter shuts down aborts the process
    ("terminate called without an active exception"), which would fail a finished run."""
    store = _connect()
    if store is None:
        return
    stop = threading.Event()

    def watch(store: Any) -> None:
        while not stop.wait(WATCH_INTERVAL_S):
            failure = peer_failure(store)
            if failure is None:
                continue
            if stop.wait(PEER_FAILURE_GRACE_S):
                return
            print(f"stopped: {stopped_by_peer(failure)}", file=sys.stderr, flush=True)
            os._exit(1)

    thread = threading.Thread(target=watch, args=(store,), name="tunesmith-peer-failure", daemon=True)
    del store  # the thread holds the only reference, so the client closes when the thread ends
    thread.start()

    def end_watch() -> None:
        stop.set()
        thread.join(timeout=WATCH_INTERVAL_S + 5.0)
        _STORE.clear()  # the main thread's client too, before the interpreter tears down

    atexit.register(end_watch)
