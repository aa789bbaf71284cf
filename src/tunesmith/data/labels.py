"""Classification labels: raw values in a file -> integer ids, with the id -> name mapping kept.

A file may give ids (``0``, ``1``) or names (``"negative"``, ``"positive"``). Names become ids
through ``data.label_names`` when it is given, else through the sorted set of names found, so the
same file always gives the same ids. Mixing ids and names without ``data.label_names`` is an error
because nothing says which name an id stands for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from tunesmith.data.row_fields import BAD_LABEL, EMPTY, missing
from tunesmith.errors import DataError
from tunesmith.registry import did_you_mean

LABEL = "label"  # the canonical column holding a label
_ANY = "Allowed: an integer id >= 0 or a label name"


@dataclass(frozen=True)
class LabelMap:
    """Label names by id: ``LabelMap(("neg", "pos"))`` maps ``"pos"`` -> 1 and accepts ids 0..1.

    ``names`` is empty when the data gives bare ids and no ``data.label_names``: any id >= 0 is
    accepted then.
    """

    names: tuple[str, ...] = ()
    given: bool = False  # names came from data.label_names (else from the data)
    field: str = LABEL  # how errors name the field: "label", or "label (column 'sentiment')"

    def resolve(self, value: Any, where: str) -> tuple[int, Optional[str]]:
        """``"pos"`` -> ``(1, "pos")``; ``1`` -> ``(1, "pos")``; an unknown name or id is an error."""
        value = check_label_value(value, where, self.field)
        if isinstance(value, str):
            if value not in self.names:
                hint = did_you_mean(value, self.names)
                raise DataError(f"{where}: {self.field} {value!r} is not a known label name.{hint} "
                                f"Allowed: {self.allowed()}", reason=BAD_LABEL)
            return self.names.index(value), value
        if self.names and not self.given:
            raise DataError(f"{where}: {self.field} {value} is an id but other rows use names "
                            f"({', '.join(self.names[:5])}); use names in every row, or set data.label_names "
                            "so ids and names agree", reason=BAD_LABEL)
        if self.names and value >= len(self.names):
            raise DataError(f"{where}: {self.field} {value} is out of range. Allowed: {self.allowed()}",
                            reason=BAD_LABEL)
        return value, self.names[value] if self.names else None

    def allowed(self) -> str:
        """What a label may be: ``"ids 0..1 or names neg, pos"``."""
        if not self.names:
            return "integer ids >= 0 (or names, in every row)"
        if not self.given:
            return f"names {', '.join(self.names)}"
        return f"ids 0..{len(self.names) - 1} or names {', '.join(self.names)}"


def build_label_map(
    values: list[tuple[Any, str]], label_names: Optional[list[str]] = None, field: str = LABEL,
    strict: bool = True,
) -> LabelMap:
    """The label map for ``(value, where)`` pairs of one dataset.

    ``[("pos", "f:1"), ("neg", "f:2")]`` -> ``LabelMap(("neg", "pos"))``;
    ``[(0, "f:1"), (1, "f:2")]`` -> ``LabelMap(())``; with ``label_names=["no", "yes"]`` ->
    ``LabelMap(("no", "yes"), given=True)``. ``strict`` checks every value here, so a bad one fails
    before any example is built; otherwise bad values are left for each row's parse to report.
    """
    if label_names:
        if len(set(label_names)) != len(label_names):
            raise DataError(f"data.label_names has duplicate names: {list(label_names)}", reason=BAD_LABEL)
        labels = LabelMap(tuple(str(n) for n in label_names), given=True, field=field)
    else:
        names = set()
        for value, where in values:
            try:
                kind = check_label_value(value, where, field)
            except DataError:
                if strict:
                    raise
                continue
            if isinstance(kind, str):
                names.add(kind)
        labels = LabelMap(tuple(sorted(names)), field=field)
    if strict:
        for value, where in values:
            labels.resolve(value, where)
    return labels


def read_label(row: dict[str, Any], where: str) -> Any:
    """The raw label of a row: ``{"label": "pos"}`` -> ``"pos"``; a missing column is an error."""
    if row.get(LABEL) is None:
        if LABEL in row:
            raise DataError(f"{where}: column '{LABEL}' is null. {_ANY}", reason=EMPTY)
        raise missing(row, LABEL, where)
    return row[LABEL]


def check_label_value(value: Any, where: str, field: str = LABEL) -> int | str:
    """``3`` -> 3, ``3.0`` -> 3, ``"3"`` -> 3, ``"pos"`` -> "pos"; bools, fractions, negatives and lists are errors."""
    if isinstance(value, bool):
        raise DataError(f"{where}: {field} {value!r} is a boolean; write 0/1 or a name. {_ANY}", reason=BAD_LABEL)
    if isinstance(value, float):
        if not value.is_integer():
            raise DataError(f"{where}: {field} {value!r} has a fraction. {_ANY}", reason=BAD_LABEL)
        value = int(value)  # 1.0 from a pandas export is the id 1
    if isinstance(value, int):
        if value < 0:
            raise DataError(f"{where}: {field} {value} is negative. {_ANY}", reason=BAD_LABEL)
        return value
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{where}: {field} is an empty string. {_ANY}", reason=BAD_LABEL)
        if value.strip().isdigit():  # CSV/TSV cells are text: "2" is the id 2, not a name
            return int(value.strip())
        return value
    raise DataError(f"{where}: {field} must be an integer id or a name, got {type(value).__name__}: {value!r:.80}. "
                    f"{_ANY}", reason=BAD_LABEL)
