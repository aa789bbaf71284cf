"""The failure flag in the launcher's store: the first process to fail writes it, the others read
which process failed; a one-process run has none. And how the command line names the process."""

import socket
from datetime import timedelta

import pytest
from torch.distributed import TCPStore

from tunesmith.cli.error_boundary import report_error
from tunesmith.errors import ConfigError, StoppedByPeer
from tunesmith.training import distributed


@pytest.fixture
def launcher_store(monkeypatch):
    """A store like torchrun's agent store, and the environment a worker of 2 processes sees."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = TCPStore("127.0.0.1", port, is_master=True, timeout=timedelta(seconds=10), wait_for_workers=False)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("TORCHELASTIC_ERROR_FILE", raising=False)
    monkeypatch.setattr(distributed, "_STORE", [])

    def as_rank(rank):
        monkeypatch.setenv("RANK", str(rank))
        distributed._STORE.clear()  # each process has its own client

    yield as_rank
    del server


def test_the_first_failure_is_kept_and_read_by_the_other_ranks(launcher_store):
    launcher_store(1)
    assert distributed.peer_failure() is None
    try:
        raise ValueError("row 7 of rank 1's shard is bad")
    except ValueError as err:
        distributed.announce_failure(err)
    assert distributed.peer_failure() is None  # its own failure is no peer's
    launcher_store(0)
    assert distributed.peer_failure() == "rank 1 of 2 failed: ValueError: row 7 of rank 1's shard is bad"
    distributed.announce_failure(RuntimeError("Connection closed by peer"))  # later: not kept
    launcher_store(1)
    assert distributed.peer_failure() is None
    stopped = distributed.stopped_by_peer("rank 1 of 2 failed: ValueError: x")
    assert isinstance(stopped, StoppedByPeer)
    assert str(stopped).startswith("rank 1 of 2 stopped because rank 1 of 2 failed")


def test_a_restarted_attempt_starts_without_the_flag(launcher_store, monkeypatch):
    launcher_store(1)
    distributed.announce_failure(ValueError("first attempt"))
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    launcher_store(0)
    assert distributed.peer_failure() is None


def test_one_process_has_no_flag(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setattr(distributed, "_STORE", [])
    assert distributed.peer_failure() is None
    distributed.announce_failure(ValueError("alone"))  # nothing to tell, no error


def test_the_command_line_names_the_rank(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path))
    err = RuntimeError("rank one cannot go on")
    err.tunesmith_rank = "rank 1 of 2"
    assert report_error(err, []) == 1
    assert "internal error on rank 1 of 2: RuntimeError: rank one cannot go on" in capsys.readouterr().err
    bad = ConfigError("data.train: no such file")
    bad.tunesmith_rank = "rank 1 of 2"
    assert report_error(bad, []) == 2
    assert "error on rank 1 of 2: data.train: no such file" in capsys.readouterr().err
    assert report_error(StoppedByPeer("rank 0 of 2 stopped because rank 1 of 2 failed"), []) == 1
    assert capsys.readouterr().err.startswith("stopped: rank 0 of 2 stopped because rank 1 of 2 failed")
