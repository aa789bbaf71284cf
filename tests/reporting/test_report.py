"""The run report: written by `tunesmith train`, self-contained, and rendered by headless Chromium."""

import json
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tunesmith.api import FineTuner
from tunesmith.cli.main import main
from tunesmith.config import load_config
from tunesmith.errors import RunDirError
from tunesmith.reporting.report import render_report, write_report
from tunesmith.reporting.run_files import read_run_files

SECTIONS = ["summary", "before-after", "samples", "curves", "resources", "data", "config"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, chatty_llama_dir):
    """A tiny run on the built-in arith data: before/after by exact match, eval loss every 2 steps."""
    out = tmp_path_factory.mktemp("report") / "run"
    cfg = load_config(overrides=[
        f"model.name_or_path={chatty_llama_dir}", "data.train=arith", "data.max_samples=16", "data.cache=false",
        f"output_dir={out}", "train.max_steps=4", "train.batch_size=4", "train.logging_steps=1",
        "train.eval_steps=2", "train.precision=fp32", "eval.max_samples=3", "eval.max_new_tokens=12"])
    FineTuner(cfg).train()
    return out


class Elements(HTMLParser):
    """Collects ids, tags with their attributes, and visible text."""

    def __init__(self):
        super().__init__()
        self.ids, self.tags, self.text = set(), [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if "id" in attrs:
            self.ids.add(attrs["id"])

    def handle_data(self, data):
        self.text.append(data)


def parse(html):
    parser = Elements()
    parser.feed(html)
    return parser


def test_train_writes_the_report_with_every_section(run_dir):
    html = (run_dir / "report.html").read_text()
    page = parse(html)
    assert set(SECTIONS) <= page.ids
    results = json.loads((run_dir / "eval_results.json").read_text())
    text = " ".join(page.text)
    before, after = results["before"], results["after"]
    assert f"{before['score']:.1%}" in text and f"{after['score']:.1%}" in text
    assert f"({after['correct']}/{after['total']})" in text
    # Every held-out question is shown with both answers, escaped.
    for b, a in zip(before["samples"], after["samples"]):
        assert b["question"] in text and b["output"].strip() in text and a["output"].strip() in text
    assert text.count("base model") >= len(before["samples"])
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert {i["alt"] for i in images} >= {"loss curve", "learning rate", "throughput", "memory"}
    record = json.loads((run_dir / "run.json").read_text())
    assert record["resources"]["peak_rss_mb"] > 50 and record["resources"]["tokens_per_s"] > 0
    assert record["data"]["train"]["kept"] == 16 and f"{record['data']['train']['tokens']:,}" in text


def test_the_report_needs_no_network(run_dir):
    html = (run_dir / "report.html").read_text()
    page = parse(html)
    links = [attrs.get("src") or attrs.get("href") for _, attrs in page.tags if "src" in attrs or "href" in attrs]
    assert links and all(link.startswith("data:image/png;base64,") for link in links)
    assert not re.search(r"https?://|@import|url\(", html)
    assert not any(tag in ("script", "link", "iframe") for tag, _ in page.tags)


def test_changed_config_keys_are_highlighted(run_dir):
    page = parse((run_dir / "report.html").read_text())
    rows = [attrs for tag, attrs in page.tags if tag == "tr" and attrs.get("class") == "changed"]
    html = (run_dir / "report.html").read_text()
    changed = re.findall(r'<tr class="changed"><td><code>([^<]+)</code>', html)
    assert len(rows) == len(changed)
    assert {"train.max_steps", "data.max_samples", "eval.max_samples"} <= set(changed)
    assert "train.lr" not in changed  # left at its default


def test_eval_curves_show_the_eval_loss(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "eval_loss" in r] == [2, 4]
    resources = [json.loads(line) for line in (run_dir / "resources.jsonl").read_text().splitlines()]
    assert [r["step"] for r in resources] == [1, 2, 3, 4]  # training-step logs only
    assert all(r["rss_mb"] > 0 and r["tokens_per_s"] > 0 for r in resources)


def test_report_command_and_later_evaluations(run_dir, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "eval_rouge_l.json").write_text(json.dumps(
        {"metric": "rouge_l", "metric_label": "ROUGE-L", "score": 0.4321, "total": 7, "model": "x", "data": "d.jsonl"}))
    out = tmp_path / "elsewhere" / "r.html"
    assert main(["report", str(copy), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    page = parse(out.read_text())
    assert "evaluations" in page.ids and "0.4321" in " ".join(page.text)
    assert main(["report", str(tmp_path)]) == 2
    assert "not a finished run directory" in capsys.readouterr().err


def test_unfinished_and_partial_runs_still_render(tmp_path):
    (tmp_path / "config.yaml").write_text("model:\n  name_or_path: m\ntrain:\n  lr: 0.5\n")
    html = render_report(read_run_files(tmp_path))
    page = parse(html)
    assert set(SECTIONS) - {"samples"} <= page.ids
    text = " ".join(page.text)
    assert "the run did not finish" in text and "did not compare the base and the tuned model" in text
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss":\n')
    with pytest.raises(RunDirError, match=r"metrics.jsonl:2: invalid JSON"):
        write_report(tmp_path)
    with pytest.raises(RunDirError, match="missing: does not exist"):
        write_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="no config.yaml"):
        write_report(tmp_path / "empty")


def test_lower_is_better_metrics_colour_the_change(tmp_path):
    (tmp_path / "config.yaml").write_text("model:\n  name_or_path: m\n")
    results = {"metric": "perplexity", "before": {"metric": "perplexity", "score": 12.0, "loss": 2.48, "total": 5,
                                                  "higher_is_better": False},
               "after": {"metric": "perplexity", "score": 6.0, "loss": 1.79, "total": 5, "higher_is_better": False}}
    (tmp_path / "eval_results.json").write_text(json.dumps(results))
    html = render_report(read_run_files(tmp_path))
    assert re.search(r'<td class="up">-6</td>', html)  # perplexity fell: an improvement
    assert re.search(r'<td class="up">-0.69</td>', html)  # so did the loss per token


# --- headless Chromium -------------------------------------------------------------------------------
def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium is not installed (`make test` installs Debian's chromium package)")


def run_chromium(*args):
    # --no-sandbox: tests run as root; no network is needed (the page is self-contained).
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_chromium_renders_the_report(run_dir, tmp_path):
    report = (run_dir / "report.html").resolve()
    dom = run_chromium("--dump-dom", report.as_uri())
    page = parse(dom)
    assert set(SECTIONS) <= page.ids  # the browser's DOM, after parsing, keeps every section
    assert "Before and after" in dom and "Sample generations" in dom and "Throughput and memory" in dom
    assert sum(1 for tag, attrs in page.tags if tag == "img" and attrs["src"].startswith("data:image/png")) >= 4
    shot = tmp_path / "report.png"
    run_chromium(f"--screenshot={shot}", "--window-size=1200,1600", report.as_uri())
    assert png_size(shot) == (1200, 1600)
    assert shot.stat().st_size > 30_000  # a rendered page with charts, not a blank canvas
