"""The run report: one self-contained HTML file (inline CSS and PNG charts, no scripts, no network).

``write_report(run_dir)`` writes ``run_dir/report.html`` with, in order: a summary, before/after
metrics, sample generations side by side, loss / learning-rate / eval curves, throughput and memory,
data statistics, later evaluations and the full config (keys changed from the defaults marked).
"""

from __future__ import annotations

import base64
import dataclasses
from html import escape
from pathlib import Path
from typing import Any, Optional

from tunesmith.config.run_dir import RunDir
from tunesmith.reporting.charts import line_chart, points
from tunesmith.reporting.plots import reward_keys
from tunesmith.reporting.report_style import CSS
from tunesmith.reporting.run_files import RunFiles, flatten, read_run_files

MAX_SAMPLES = 8  # sample generations shown side by side; the JSON keeps them all
# Logged keys that are bookkeeping, not curves worth a chart.
_NOT_CURVES = {"step", "epoch", "elapsed_s", "tokens_seen", "loss", "learning_rate", "grad_norm", "eval_loss"}


def write_report(run_dir: str | Path, out: Optional[str | Path] = None) -> Path:
    """Write the report of ``run_dir`` to ``out`` (default ``run_dir/report.html``); returns the path.

    Raises:
        RunDirError: ``run_dir`` is not a run directory, or one of its records is unreadable.
    """
    files = read_run_files(run_dir)
    path = Path(out) if out is not None else RunDir(files.run_dir).report_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(files), encoding="utf-8")
    return path


def render_report(files: RunFiles) -> str:
    """The report's HTML text."""
    name = files.run_dir.resolve().name
    model = files.config.get("model", {}).get("name_or_path", "?")
    sections = [_summary(files), _before_after(files), _samples(files), _curves(files), _resources(files),
                _data(files), _evaluations(files), _config(files)]
    subtitle = " · ".join(escape(str(v)) for v in (
        model, files.record.get("method"), files.record.get("task"), files.record.get("finished")) if v)
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>tunesmith run {escape(name)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
            f"<header><h1>Run <code>{escape(name)}</code></h1><p class=\"sub\">{subtitle}</p></header>\n"
            + "\n".join(s for s in sections if s) + "\n</main>\n</body>\n</html>\n")


# -- sections -----------------------------------------------------------------------------------
def _summary(files: RunFiles) -> str:
    r, res = files.record, files.record.get("resources") or {}
    cards = [
        ("training time", _duration(r.get("train_seconds"))),
        ("optimizer steps", _num(r.get("global_step"))),
        ("final training loss", _num(r.get("train_loss"), ".4f")),
        ("tokens / s (training)", _num(res.get("tokens_per_s"), ",.0f")),
        ("peak memory (process)", _mib(res.get("peak_rss_mb"))),
        ("peak GPU memory", _mib(res.get("peak_cuda_mb"))),
        ("trainable parameters", _params(r.get("trainable_parameters"), r.get("total_parameters"))),
        ("device · precision", " · ".join(str(v) for v in (r.get("device"), r.get("precision")) if v) or "—"),
    ]
    if files.before_after:
        before, after = files.before_after["before"], files.before_after["after"]
        cards.insert(0, (f"{_label(after)}: base → tuned", f"{_fmt(after, before['score'])} → {_fmt(after, after['score'])}"))
    if not r:
        cards.append(("status", "no run.json: the run did not finish"))
    body = "".join(f"<div class=\"card\"><div class=\"k\">{escape(k)}</div><div class=\"v\">{escape(v)}</div></div>"
                   for k, v in cards)
    return f"<section id=\"summary\"><h2>Summary</h2><div class=\"cards\">{body}</div></section>"


def _before_after(files: RunFiles) -> str:
    if not files.before_after:
        return ("<section id=\"before-after\"><h2>Before and after</h2><p class=\"note\">This run did not compare "
                "the base and the tuned model (eval.before_after); <code>tunesmith eval</code> scores either.</p>"
                "</section>")
    before, after = files.before_after["before"], files.before_after["after"]
    rows = [(_label(after), before["score"], after["score"], after)]
    for key, label, higher in (("macro_f1", "macro F1", True), ("mcc", "MCC", True), ("loss", "loss per token", False),
                               ("precision", "precision", True), ("recall", "recall", True),
                               ("pair_accuracy", "held-out pairs: chosen preferred", True)):
        if key in before and key in after and not (key == "pair_accuracy" and after.get("metric") == key):
            rows.append((label, before[key], after[key],
                         {"higher_is_better": higher, "percent": key == "pair_accuracy"}))
    body = "".join(
        f"<tr><td>{escape(label)}</td><td>{escape(_fmt(kind, b))}{_count(before) if i == 0 else ''}</td>"
        f"<td>{escape(_fmt(kind, a))}{_count(after) if i == 0 else ''}</td><td class=\"{_trend(a - b, kind)}\">"
        f"{escape(_fmt(kind, a - b, signed=True))}</td></tr>"
        for i, (label, b, a, kind) in enumerate(rows))
    how = _how(after)
    table = (f"<table class=\"ba\"><thead><tr><th>held-out metric</th><th>base model</th><th>fine-tuned</th>"
             f"<th>change</th></tr></thead><tbody>{body}</tbody></table>")
    matrices = ""
    if "reward_accuracy" in after:  # preference training: the implicit reward against the starting model
        table += (f"<p class=\"note\">Tuned model on the {after.get('pairs', '?')} held-out pairs: reward accuracy "
                  f"{after['reward_accuracy']:.1%} (the chosen answer gains more log-probability over the starting "
                  f"model than the rejected one), mean reward margin {after['reward_margin']:.3f}.</p>")
    if "confusion_matrix" in after:
        matrices = ("<div class=\"pair\">" + _matrix("base model", before) + _matrix("fine-tuned", after) + "</div>")
    return (f"<section id=\"before-after\"><h2>Before and after</h2><p class=\"note\">Same {after.get('total', '?')} "
            f"held-out examples for both models{escape(how)}.</p>{table}{matrices}</section>")


def _samples(files: RunFiles) -> str:
    if not files.before_after:
        return ""
    before, after = files.before_after["before"].get("samples", []), files.before_after["after"].get("samples", [])
    pairs = [(b, a) for b, a in zip(before, after) if "output" in b and "output" in a][:MAX_SAMPLES]
    if not pairs:
        return ""
    cards = []
    for i, (b, a) in enumerate(pairs, start=1):
        cards.append(
            f"<article class=\"sample\"><div class=\"q\"><span class=\"n\">#{i}</span> {escape(b['question'])}</div>"
            f"<div class=\"ref\">reference: <b>{escape(str(b['reference']))}</b></div><div class=\"pair\">"
            f"{_output('base model', b)}{_output('fine-tuned', a)}</div></article>")
    shown = f"the first {len(pairs)} of {len(before)}" if len(before) > len(pairs) else f"all {len(pairs)}"
    return (f"<section id=\"samples\"><h2>Sample generations</h2><p class=\"note\">{escape(shown)} held-out "
            f"questions, answered by both models (eval_results.json holds every one).</p>{''.join(cards)}</section>")


def _curves(files: RunFiles) -> str:
    m = files.metrics
    charts = [
        _img(line_chart("Loss", [("train", *points(m, "loss")), ("eval", *points(m, "eval_loss"))], ylabel="loss"),
             "loss curve"),
        _img(line_chart("Learning rate", [("learning rate", *points(m, "learning_rate"))], ylabel="learning rate"),
             "learning rate"),
        _img(line_chart("Gradient norm", [("grad norm", *points(m, "grad_norm"))], ylabel="norm"), "gradient norm"),
    ]
    rewards = reward_keys(m)  # a grpo run
    if rewards:
        charts += [
            _img(line_chart("Reward", [(k, *points(m, k)) for k in rewards], ylabel="mean reward"), "reward curves"),
            _img(line_chart("KL to the starting model", [("kl", *points(m, "kl"))], ylabel="nats per token"), "KL"),
            _img(line_chart("Completion length", [("tokens", *points(m, "completion_length")),
                                                  ("cut at max_new_tokens (share)", *points(m, "clipped_ratio"))]),
                 "completion length"),
        ]
    if any("rewards/margin" in r for r in m):  # a preference run: implicit rewards of chosen vs rejected
        charts += [
            _img(line_chart("Implicit rewards", [(k[8:], *points(m, k)) for k in
                                                 ("rewards/chosen", "rewards/rejected", "rewards/margin")],
                            ylabel="reward"), "implicit rewards"),
            _img(line_chart("Pairs ranked right", [("chosen above rejected (share)", *points(m, "rewards/accuracy"))],
                            ylabel="share"), "reward accuracy"),
            _img(line_chart("Log-probability per token", [(k[6:], *points(m, k)) for k in
                                                          ("logps/chosen", "logps/rejected")],
                            ylabel="nats per token"), "answer log-probabilities"),
        ]
    evals = sorted({k for r in m for k in r if k.startswith("eval_") and k not in _NOT_CURVES
                    and not k.endswith(("_runtime", "_per_second"))})
    if evals:
        charts.append(_img(line_chart("Evaluation during training", [(k[5:], *points(m, k)) for k in evals]),
                           "evaluation curves"))
    charts = [c for c in charts if c]
    if not charts:
        return ("<section id=\"curves\"><h2>Training curves</h2><p class=\"note\">metrics.jsonl holds no logged "
                "step.</p></section>")
    return f"<section id=\"curves\"><h2>Training curves</h2><div class=\"charts\">{''.join(charts)}</div></section>"


def _resources(files: RunFiles) -> str:
    res, log = files.record.get("resources") or {}, files.resources
    charts = [
        _img(line_chart("Throughput", [("tokens / s", *points(log, "tokens_per_s"))], ylabel="tokens / s"),
             "throughput"),
        _img(line_chart("Memory", [("process (RSS)", *points(log, "rss_mb")),
                                   ("GPU allocated", *points(log, "cuda_allocated_mb"))], ylabel="MiB"), "memory"),
    ]
    charts = [c for c in charts if c]
    facts = [("non-padding tokens trained", _num(res.get("tokens_seen"), ",")),
             ("tokens / s over the whole training", _num(res.get("tokens_per_s"), ",.1f")),
             ("peak resident memory of the process", _mib(res.get("peak_rss_mb"))),
             ("peak GPU memory allocated", _mib(res.get("peak_cuda_mb")))]
    table = _kv_table(facts)
    if not res and not log:
        table = "<p class=\"note\">This run recorded no throughput or memory (no resources.jsonl).</p>"
    return (f"<section id=\"resources\"><h2>Throughput and memory</h2>{table}"
            f"<div class=\"charts\">{''.join(charts)}</div></section>")


def _data(files: RunFiles) -> str:
    data = files.record.get("data") or {}
    cfg = files.config.get("data", {})
    facts = [("data.train", cfg.get("train")), ("data.eval", cfg.get("eval") or "—"), ("format", data.get("format"))]
    if data.get("label_names"):
        facts.append(("labels", ", ".join(map(str, data["label_names"]))))
    rows = ""
    for split in ("train", "eval"):
        s = data.get(split)
        if s:
            dropped = s.get("dropped_too_long", 0) + s.get("dropped_too_short", 0) + s.get("dropped_no_trained_token", 0)
            truncated = s.get("truncated_end", 0) + s.get("truncated_prompt", 0)
            rows += (f"<tr><td>{split}</td><td>{s.get('kept', 0):,}</td><td>{s.get('tokens', 0):,}</td>"
                     f"<td>{s.get('trained_tokens', 0):,}</td><td>{s.get('longest', 0):,}</td><td>{dropped:,}</td>"
                     f"<td>{truncated:,}</td></tr>")
    table = (f"<table><thead><tr><th>split</th><th>examples</th><th>tokens</th><th>trained tokens</th>"
             f"<th>longest</th><th>dropped</th><th>truncated</th></tr></thead><tbody>{rows}</tbody></table>"
             if rows else "<p class=\"note\">No data statistics in run.json.</p>")
    notes = "".join(f"<li>{escape(str(n))}</li>" for n in data.get("notes", []))
    return (f"<section id=\"data\"><h2>Data</h2>{_kv_table([(k, str(v)) for k, v in facts if v])}{table}"
            + (f"<ul class=\"notes\">{notes}</ul>" if notes else "") + "</section>")


def _evaluations(files: RunFiles) -> str:
    if not files.evaluations:
        return ""
    rows = "".join(
        f"<tr><td><code>{escape(name)}</code></td><td>{escape(str(r.get('model', '')))}</td>"
        f"<td>{escape(str(r.get('data', '')))}</td><td>{escape(_label(r))}</td>"
        f"<td>{escape(_fmt(r, r['score']) if 'score' in r else '—')}{_count(r)}</td></tr>"
        for name, r in files.evaluations.items())
    return (f"<section id=\"evaluations\"><h2>Evaluations</h2><table><thead><tr><th>file</th><th>model</th>"
            f"<th>data</th><th>metric</th><th>score</th></tr></thead><tbody>{rows}</tbody></table></section>")


def _config(files: RunFiles) -> str:
    from tunesmith.config import load_config

    defaults = flatten(dataclasses.asdict(load_config()))  # what `tunesmith train` with no arguments uses
    rows = []
    for key, value in flatten(files.config).items():
        changed = key in defaults and defaults[key] != value
        mark = " class=\"changed\"" if changed else ""
        rows.append(f"<tr{mark}><td><code>{escape(key)}</code></td><td><code>{escape(_show(value))}</code></td></tr>")
    return (f"<section id=\"config\"><h2>Config</h2><p class=\"note\">The resolved config.yaml; keys set away "
            f"from the packaged defaults are highlighted.</p><table class=\"config\"><tbody>{''.join(rows)}"
            f"</tbody></table></section>")


# -- pieces -------------------------------------------------------------------------------------
def _img(png: Optional[bytes], alt: str) -> str:
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return f"<figure><img alt=\"{escape(alt)}\" src=\"data:image/png;base64,{data}\"></figure>"


def _output(who: str, sample: dict[str, Any]) -> str:
    if "correct" in sample:
        verdict, css = ("correct", "ok") if sample["correct"] else ("wrong", "bad")
    elif "score" in sample:
        verdict, css = f"score {sample['score']:.3f}", "neutral"
    else:
        verdict, css = "", "neutral"
    return (f"<div class=\"out {css}\"><div class=\"who\">{escape(who)} <span class=\"tag\">{escape(verdict)}</span>"
            f"</div><pre>{escape(sample['output'])}</pre></div>")


def _matrix(title: str, result: dict[str, Any]) -> str:
    cm = result["confusion_matrix"]
    names, matrix = [str(n) for n in cm["labels"]], cm["matrix"]
    head = "".join(f"<th>{escape(n)}</th>" for n in names)
    body = "".join(f"<tr><th>{escape(n)}</th>" + "".join(
        f"<td class=\"{'diag' if i == j else ''}\">{c}</td>" for j, c in enumerate(row)) + "</tr>"
        for i, (n, row) in enumerate(zip(names, matrix)))
    return (f"<div><h3>Confusion matrix, {escape(title)}</h3><table class=\"cm\"><thead><tr><th>true \\ predicted"
            f"</th>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def _kv_table(facts: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
    return f"<table class=\"kv\"><tbody>{rows}</tbody></table>"


def _label(result: dict[str, Any]) -> str:
    """How the result names its metric (evaluators store ``metric_label``; older files only ``metric``)."""
    return str(result.get("metric_label") or str(result.get("metric", "score")).replace("_", " "))


def _fmt(result: dict[str, Any], value: float, signed: bool = False) -> str:
    """``value`` as the result's metric shows it: a percentage for exact match and accuracy."""
    percent = result.get("percent", result.get("metric") in ("exact_match", "accuracy"))
    sign = "+" if signed else ""
    return f"{value:{sign}.1%}" if percent else f"{value:{sign}.4g}"


def _count(result: dict[str, Any]) -> str:
    if "correct" in result and "total" in result:
        return f" <span class=\"count\">({result['correct']}/{result['total']})</span>"
    return ""


def _trend(change: float, result: dict[str, Any]) -> str:
    """CSS class of a change: ``up`` when it is an improvement, ``down`` when it is worse."""
    if change == 0:
        return "same"
    higher = result.get("higher_is_better", result.get("metric") != "perplexity")
    return "up" if (change > 0) == higher else "down"


def _how(result: dict[str, Any]) -> str:
    settings = result.get("settings") or {}
    if not settings:
        return ""
    mode = (f"sampled at temperature {settings.get('temperature')}, top-p {settings.get('top_p')}"
            if settings.get("do_sample") else "greedy decoding")
    return f", {mode}, up to {settings.get('max_new_tokens')} new tokens"


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _num(value: Any, spec: str = "") -> str:
    return "—" if value is None else format(value, spec)


def _mib(value: Any) -> str:
    return "—" if value is None else f"{value:,.0f} MiB"


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _params(trainable: Any, total: Any) -> str:
    if not trainable or not total:
        return "—"
    return f"{trainable:,} of {total:,} ({trainable / total:.2%})"
