"""Showing what the model will be trained on: length histograms and token-level masks."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from tunesmith.data.tokenize import IGNORE_INDEX

GREEN, DIM, RESET = "\033[32m", "\033[2m", "\033[0m"


def mark_trained(tokenizer: Any, input_ids: list[int], labels: list[int], color: bool) -> str:
    """Decode an example, showing trained tokens against masked ones.

    With ``color`` trained text is green and masked text dim; without, trained text is wrapped in
    ``[[`` ``]]``: ``"<|im_start|>user\\n2+2?...assistant\\n[[4<|im_end|>]]\\n"``.
    """
    pieces: list[str] = []
    run: list[int] = []
    run_trained = None
    for token, label in zip(input_ids, labels):
        trained = label != IGNORE_INDEX
        if run and trained != run_trained:
            pieces.append(_wrap(tokenizer.decode(run), bool(run_trained), color))
            run = []
        run.append(token)
        run_trained = trained
    if run:
        pieces.append(_wrap(tokenizer.decode(run), bool(run_trained), color))
    return "".join(pieces)


def _wrap(text: str, trained: bool, color: bool) -> str:
    if color:
        return f"{GREEN if trained else DIM}{text}{RESET}"
    return f"[[{text}]]" if trained else text


def histogram_lines(lengths: list[int], bins: int = 10, width: int = 40) -> list[str]:
    """A text histogram: ``"  64-  95 | ######              | 120"`` per bin."""
    if not lengths:
        return ["(no examples)"]
    low, high = min(lengths), max(lengths)
    step = max(1, -(-(high - low + 1) // bins))
    counts = [0] * bins
    for n in lengths:
        counts[min((n - low) // step, bins - 1)] += 1
    top = max(counts)
    lines = []
    for i, count in enumerate(counts):
        start = low + i * step
        if start > high:
            break
        bar = "#" * round(width * count / top) if top else ""
        lines.append(f"  {start:>5}-{start + step - 1:>5} | {bar:<{width}} | {count}")
    return lines


def histogram_png(lengths: list[int], out: Path, max_length: int | None = None) -> Path:
    """The token-length histogram as a PNG (with the max_length limit drawn when given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(lengths, bins=min(50, max(5, len(set(lengths)))), color="tab:blue")
    if max_length:
        ax.axvline(max_length, color="tab:red", linestyle="--", label=f"data.max_length={max_length}")
        ax.legend()
    ax.set_xlabel("tokens per example")
    ax.set_ylabel("examples")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def padding_report(lengths: list[int], batch_size: int, max_length: int, seed: int) -> dict[str, float]:
    """Share of padded token slots for each ``data.packing`` choice, on the same examples.

    ``none`` uses a seeded random order (what a shuffled DataLoader does); ``padding_free`` puts
    each batch in one row, so nothing is padded; ``pack`` pads each batch of packed blocks to its
    longest block, as the packed collator does.
    """
    from tunesmith.data.packing import group_by_length_order, pack_best_fit_decreasing, padding_fraction

    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    blocks = pack_best_fit_decreasing(lengths, max_length)
    block_lengths = [sum(lengths[i] for i in block) for block in blocks]
    return {
        "none": padding_fraction(lengths, batch_size, order),
        "padding_free": 0.0,
        "group_by_length": padding_fraction(lengths, batch_size, group_by_length_order(lengths, batch_size, seed)),
        "pack": padding_fraction(block_lengths, batch_size),
    }


def row_length(row: dict[str, Any]) -> int:
    """Tokens of one tokenized row: ``input_ids``; the longer side of a pair; a prompt's ``prompt_ids``.

    ``{"chosen_input_ids": [5, 6], "rejected_input_ids": [5, 7, 8]}`` -> ``3``.
    """
    if "input_ids" in row:
        return len(row["input_ids"])
    if "chosen_input_ids" in row:
        return max(len(row["chosen_input_ids"]), len(row["rejected_input_ids"]))
    return len(row.get("prompt_ids") or [])


def row_lengths(dataset: Any) -> list[int]:
    """``row_length`` of every row of a tokenized ``datasets.Dataset`` (read column by column)."""
    columns = set(dataset.column_names)
    if "input_ids" in columns:
        return [len(ids) for ids in dataset["input_ids"]]
    if "chosen_input_ids" in columns:
        return [max(len(c), len(r)) for c, r in zip(dataset["chosen_input_ids"], dataset["rejected_input_ids"])]
    if "prompt_ids" in columns:
        return [len(ids) for ids in dataset["prompt_ids"]]
    return []


def show_example(tokenizer: Any, row: dict[str, Any], color: bool, label_names: list[str] | None = None) -> str:
    """One tokenized row as text: trained tokens marked, or the text and its label for classifiers.

    A preference row shows its sides one after the other::

        chosen:
        <|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n[[4<|im_end|>]]\n
        rejected:
        <|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n[[5<|im_end|>]]\n

    (a reward model's sides have no labels: their text alone); a KTO row ends with
    ``desirable: yes`` / ``no``; a prompt row shows ``prompt:`` and ``reference:``.
    """
    if "chosen_input_ids" in row:
        parts = []
        for side in ("chosen", "rejected"):
            ids, side_labels = row[f"{side}_input_ids"], row.get(f"{side}_labels")
            text = mark_trained(tokenizer, ids, side_labels, color) if side_labels else tokenizer.decode(ids)
            parts.append(f"{side}:\n{text}")
        return "\n".join(parts)
    if "prompt_ids" in row:
        return f"prompt:\n{tokenizer.decode(row['prompt_ids'])}\nreference: {row.get('reference')}"
    if "desirable" in row:
        flag = "yes" if row["desirable"] else "no"
        return f"{mark_trained(tokenizer, row['input_ids'], row['labels'], color)}\ndesirable: {flag}"
    labels = row.get("labels")
    if isinstance(labels, list):
        return mark_trained(tokenizer, row["input_ids"], labels, color)
    label = row.get("labels", row.get("label"))
    name = label_names[label] if label_names and isinstance(label, int) and label < len(label_names) else label
    return f"{tokenizer.decode(row['input_ids'])}\n  -> label {label} ({name})"
