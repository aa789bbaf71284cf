import subprocess
import sys

import pytest

from tunesmith.cli.main import main


def test_help_does_not_import_torch():
    code = ("import sys; from tunesmith.cli.main import build_parser\n"
            "try:\n    build_parser().parse_args(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False")


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "train.lerning_rate=1"], "Did you mean 'train.lr'"),
        (["train", "peft=lorra"], "Did you mean 'lora'"),
        (["train", "data.train=arth"], "Did you mean 'arith'"),
        (["train", "missing.yaml"], "does not exist"),
        (["train", "notes.txt"], "expected a .yaml config file"),
    ],
)
def test_bad_train_input_fails_fast_with_exit_2(argv, expected, capsys):
    assert main(argv) == 2
    assert expected in capsys.readouterr().err


def test_generate_on_missing_run_dir(tmp_path, capsys):
    assert main(["generate", str(tmp_path), "hi"]) == 2
    assert "not a tunesmith run directory" in capsys.readouterr().err


def test_data_inspect_shows_marked_examples_and_writes_png(tmp_path, capsys):
    png = tmp_path / "lengths.png"
    assert main(["data", "inspect", "-n", "1", "--png", str(png), "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert "Train: 2000 examples" in out and "Padding waste" in out and "group_by_length" in out
    assert "[[" in out and "#### " in out and "<|im_end|>]]" in out  # the answer and EOS are trained
    assert png.is_file() and png.stat().st_size > 1000


def test_data_inspect_rejects_bad_config(capsys):
    assert main(["data", "inspect", "data.loss_on=everything"]) == 2
    assert "data.loss_on" in capsys.readouterr().err
