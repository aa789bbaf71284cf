"""A slow or failing experiment tracker never slows training nor holds a stop: metrics go out on a
background thread, the end of training waits for them a bounded time, and failures are warnings
with the URI's password masked."""

from __future__ import annotations

import logging
import threading
import time
from types import SimpleNamespace

from tunesmith.training.loggers import BackgroundSender, MlflowLogger

PASSWORD = "pw-tracker-Planted-99"


class HangingClient:
    """An MLflow client whose server takes far too long to answer."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def log_batch(self, run_id, metrics=None, params=None):
        self.calls += 1
        self.release.wait(60)

    def set_terminated(self, run_id, status):
        self.release.wait(60)


def test_a_hanging_tracker_does_not_slow_steps_and_the_end_waits_a_bounded_time(tmp_path, caplog):
    callback = MlflowLogger(tmp_path)
    client = HangingClient()
    callback.client, callback.run_id, callback.sender = client, "run", BackgroundSender("MLflow")
    state = SimpleNamespace(global_step=1, is_world_process_zero=True)
    callback.on_log(None, state, None, logs={"loss": 1.0})  # imports MLflow's entities once
    started = time.perf_counter()
    for step in range(20):
        state.global_step = step
        callback.on_log(None, state, None, logs={"loss": 1.0, "learning_rate": 1e-3})
    assert time.perf_counter() - started < 1.0  # 20 logs while the server hangs
    with caplog.at_level(logging.WARNING):
        started = time.perf_counter()
        callback.on_train_end(None, state, None)
        waited = time.perf_counter() - started
    client.release.set()
    assert waited < 10  # FLUSH_TIMEOUT_S (5 s), not the server's minutes
    assert "record(s) were not sent" in caplog.text and callback.client is None


def test_a_failing_send_is_one_masked_warning_and_the_next_sends_still_run(caplog):
    sent = []

    def fail():
        raise ConnectionError(f"cannot reach https://bob:{PASSWORD}@tracker.example/api")

    sender = BackgroundSender("MLflow")
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            sender.send(fail)
        sender.send(lambda: sent.append(1))
        assert sender.close(5) == 0
    assert sent == [1]
    warnings = [r for r in caplog.records if "could not be sent" in r.getMessage()]
    assert len(warnings) == 1 and PASSWORD not in caplog.text and "bob:<masked>@" in caplog.text


def test_a_server_that_answers_passes_the_liveness_check_whatever_the_status():
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from tunesmith.training.loggers import check_tracking_server

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        check_tracking_server(f"http://u:{PASSWORD}@127.0.0.1:{server.server_address[1]}", timeout_s=5)
    finally:
        thread.join(10)
        server.server_close()
    check_tracking_server(None)  # a local file store: nothing to check
    check_tracking_server("file:///tmp/mlruns")
