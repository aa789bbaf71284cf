"""Line charts for the run report, returned as PNG bytes (the report inlines them as data URIs)."""

from __future__ import annotations

import io
from typing import Optional, Sequence

Series = tuple[str, Sequence[float], Sequence[float]]  # (label, x values, y values)


def line_chart(title: str, series: Sequence[Series], xlabel: str = "step", ylabel: str = "",
               log_y: bool = False) -> Optional[bytes]:
    """One chart with a line per series, as PNG bytes; None when no series has a point.

    ``line_chart("Loss", [("train", [1, 2], [2.1, 1.7])], ylabel="loss")`` -> ``b"\\x89PNG..."``.
    """
    series = [(label, list(x), list(y)) for label, x, y in series if len(x) and len(x) == len(y)]
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    try:
        for label, x, y in series:
            # A single point draws no line: show it as a marker.
            ax.plot(x, y, "o-" if len(x) < 3 else "-", label=label, linewidth=1.6, markersize=4)
        ax.set_title(title, fontsize=11)
        ax.set_xlabel(xlabel)
        if ylabel:
            ax.set_ylabel(ylabel)
        if log_y and all(v > 0 for _, _, y in series for v in y):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=9)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def points(records: Sequence[dict], key: str, x_key: str = "step") -> tuple[list[float], list[float]]:
    """``(x, y)`` of the records that hold a number under ``key``.

    ``points([{"step": 1, "loss": 2.0}, {"step": 2}], "loss")`` -> ``([1], [2.0])``.
    """
    xs, ys = [], []
    for record in records:
        value, x = record.get(key), record.get(x_key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(x, (int, float)):
            xs.append(x)
            ys.append(float(value))
    return xs, ys
