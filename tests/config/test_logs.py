"""tunesmith's lines go through the ``tunesmith`` logger: they read as they always did, reach the current
stdout / stderr, stay out of a progress bar's way, follow -v / -q and the process's rank, and never appear
twice for a program that configured logging itself."""

import logging
import sys

import pytest

from tunesmith.config.logs import LOGGER_NAME, ConsoleHandler, parse_level, set_verbosity, verbosity
from tunesmith.errors import ConfigError

log = logging.getLogger("tunesmith.api.train_job")


@pytest.fixture(autouse=True)
def restore_level():
    logger = logging.getLogger(LOGGER_NAME)
    before = logger.level
    yield
    logger.setLevel(before)


def test_lines_read_as_printed_and_reach_the_current_streams(capsys):
    with verbosity("info"):
        log.info("Run directory: runs/x\nDevice: cpu, precision: fp32")
        log.warning("step %d: nan loss; skipped this optimizer step", 4)
        log.debug("not shown at info")
    out, err = capsys.readouterr()
    assert out == "Run directory: runs/x\nDevice: cpu, precision: fp32\n"
    assert err == "warning: step 4: nan loss; skipped this optimizer step\n"


def test_verbose_shows_details_and_quiet_keeps_warnings_and_errors(capsys):
    with verbosity("debug"):
        log.debug("tokenized-data cache: reusing entry %s", "abc")
    assert capsys.readouterr().out == "debug: tokenized-data cache: reusing entry abc\n"
    with verbosity("quiet"):
        log.info("Train data: 18 rows")
        log.warning("resuming although the config changed")
        log.error("could not write")
    out, err = capsys.readouterr()
    assert out == "" and err == "warning: resuming although the config changed\nerror: could not write\n"


def test_the_level_set_inside_a_block_comes_back_afterwards():
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    with verbosity("quiet"):
        assert logger.level == logging.WARNING
        set_verbosity(None)  # a FineTuner made inside `tunesmith train -q` keeps it quiet
        assert logger.level == logging.WARNING
    assert logger.level == logging.INFO


def test_bad_verbosity_names_the_setting_and_the_allowed_values():
    with pytest.raises(ConfigError, match=r"verbosity: 'loud' is not a verbosity; use one of debug, .*quiet"):
        parse_level("loud")
    with pytest.raises(ConfigError, match="verbosity: 'loud'"):
        from tunesmith.api import FineTuner

        FineTuner(verbosity="loud")
    assert parse_level(logging.ERROR) == logging.ERROR and parse_level("Warning") == logging.WARNING


@pytest.fixture
def keep_library_logging():
    """quiet_replica also quiets transformers and datasets; give their settings back afterwards."""
    import datasets
    import transformers

    hf = transformers.utils.logging
    state = hf.get_verbosity(), hf.is_progress_bar_enabled(), datasets.is_progress_bar_enabled()
    yield
    hf.set_verbosity(state[0])
    if state[1]:
        hf.enable_progress_bar()
    if state[2]:
        datasets.enable_progress_bars()


def test_a_replica_rank_prints_nothing_at_info(monkeypatch, capsys, keep_library_logging):
    from tunesmith.training.distributed import quiet_replica

    set_verbosity("info")
    monkeypatch.setenv("RANK", "1")
    quiet_replica()
    log.info("Run directory: runs/x")
    log.warning("disk almost full")
    out, err = capsys.readouterr()
    assert out == "" and err == "warning: disk almost full\n"


def test_the_rank_filter_is_in_the_handler(monkeypatch, capsys):
    set_verbosity("info")
    monkeypatch.setenv("RANK", "2")
    log.info("hidden on rank 2")
    monkeypatch.setenv("RANK", "0")
    log.info("shown on rank 0")
    assert capsys.readouterr().out == "shown on rank 0\n"


def test_a_program_that_shows_logs_itself_gets_each_line_once(capsys):
    root = logging.getLogger()
    own = logging.StreamHandler(sys.stderr)  # what logging.basicConfig() adds
    own.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    root.addHandler(own)
    try:
        with verbosity("info"):
            log.info("Train data: 18 rows")
    finally:
        root.removeHandler(own)
    out, err = capsys.readouterr()
    assert out == "" and err == "INFO:tunesmith.api.train_job:Train data: 18 rows\n"
    assert sum(isinstance(h, ConsoleHandler) for h in root.handlers) == 0  # nothing added to the root logger


def test_lines_written_while_a_progress_bar_is_drawn_go_through_tqdm(capsys, monkeypatch):
    from tqdm import tqdm

    written = []
    monkeypatch.setattr(tqdm, "write", classmethod(lambda cls, s, file=None, **kw: written.append((s, file))))
    with verbosity("info"), tqdm(total=3, file=sys.stderr) as bar:
        bar.update(1)
        log.info("Evaluation interrupted; saving the checkpoint of step 3")
    assert written == [("Evaluation interrupted; saving the checkpoint of step 3", sys.stdout)]
    with verbosity("info"):
        log.info("after the bar")
    assert capsys.readouterr().out.endswith("after the bar\n")


def test_cli_quiet_hides_progress_but_not_errors(tmp_path, tiny_llama_dir, alpaca_file, capsys):
    from tunesmith.cli.main import main

    logging.getLogger(LOGGER_NAME).setLevel(logging.INFO)

    args = [f"model={tiny_llama_dir}", f"data={alpaca_file}", "data.format=alpaca", "train.max_steps=2",
            "train.batch_size=4", "model.device=cpu", "train.precision=fp32", "eval.before_after=off"]
    assert main(["train", "-q", *args, f"output_dir={tmp_path / 'quiet'}"]) == 0
    out, err = capsys.readouterr()
    assert (tmp_path / "quiet" / "run.json").is_file()
    assert "Run directory" not in out and "Train data" not in out and "Saved to" not in out
    assert "Training:" not in err  # no progress bar either
    assert main(["-q", "train", *args, "train.lr=fast"]) == 2
    assert "error: train.lr" in capsys.readouterr().err
    assert main(["--verbose", "train", *args, f"output_dir={tmp_path / 'loud'}"]) == 0
    out = capsys.readouterr().out
    assert "Run directory" in out and "debug: The run's plan:\n  task: causal_lm" in out
    assert logging.getLogger(LOGGER_NAME).level == logging.INFO  # the command's level ends with it


def test_progress_bars_follow_the_level_and_the_rank(monkeypatch):
    from tunesmith.config.logs import show_progress

    with verbosity("info"):
        assert show_progress()
        monkeypatch.setenv("RANK", "1")
        assert not show_progress()
        monkeypatch.setenv("RANK", "0")
    with verbosity("quiet"):
        assert not show_progress()


def test_a_librarys_offline_kernel_warning_moves_to_debug(capsys):
    """bitsandbytes' import-time warning about a downloaded CPU kernel (the hub is offline) is not
    printed at the default level, shows under -v, and its other warnings still pass."""
    from tunesmith.config.logs import install_console

    install_console()
    noisy = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with verbosity("info"):
        noisy.warning("Failed to load CPU gemm_4bit_forward from kernels-community: offline")
    assert "gemm_4bit_forward" not in capsys.readouterr().err
    with verbosity("debug"):
        noisy.warning("Failed to load CPU gemm_4bit_forward from kernels-community: offline")
    assert "debug: bitsandbytes.backends.cpu.ops: Failed to load CPU gemm_4bit_forward" in capsys.readouterr().out
    kept = []
    handler = logging.Handler()
    handler.emit = kept.append
    noisy.addHandler(handler)
    try:
        noisy.warning("something else")
    finally:
        noisy.removeHandler(handler)
    assert [r.getMessage() for r in kept] == ["something else"]
