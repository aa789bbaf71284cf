"""How ``arith`` writes its working: one line per operation, digit by digit where it matters.

A small model adds two-digit numbers badly when it must write the tens digit before it has
worked out the carry from the ones. The ``columns`` working spells each multi-digit operation out
the way it is done on paper, one column at a time from the ones, with the carry or borrow written
into the next column, so every step is a one-digit fact; the line then states the whole result:

- ``37 + 13: 7 + 3 = 10, 3 + 1 + 1 = 5, so 37 + 13 = 50.``
- ``63 - 34: 13 - 4 = 9, 6 - 1 - 3 = 2, so 63 - 34 = 29.``
- ``39 * 3: 9 * 3 = 27, 3 * 3 + 2 = 11, so 39 * 3 = 117.``
- ``96 / 4: 9 / 4 = 2 r 1, 16 / 4 = 4, so 96 / 4 = 24.``

One-digit facts (``4 * 5 = 20.``, ``7 - 3 = 4.``, and a division within the times table such as
``42 / 6 = 7.``) stay on one short line. The ``plain`` working writes every operation that way.
"""

from __future__ import annotations

WORKINGS = ("columns", "plain")


def _digits(value: int) -> list[int]:
    """Digits from the ones up: ``137`` -> ``[7, 3, 1]``."""
    return [int(d) for d in reversed(str(value))]


def _add_columns(a: int, b: int) -> list[str]:
    da, db = _digits(a), _digits(b)
    parts, carry = [], 0
    for i in range(max(len(da), len(db))):
        x, y = da[i] if i < len(da) else 0, db[i] if i < len(db) else 0
        total = x + y + carry
        parts.append(f"{x} + {y}{' + 1' if carry else ''} = {total}")
        carry = total // 10
    return parts


def _subtract_columns(a: int, b: int) -> list[str]:
    da, db = _digits(a), _digits(b)
    parts, borrow = [], 0
    for i in range(len(da)):
        x, y = da[i], db[i] if i < len(db) else 0
        borrows = x - borrow < y
        top = f"1{x}" if borrows else str(x)
        parts.append(f"{top}{' - 1' if borrow else ''} - {y} = {int(top) - borrow - y}")
        borrow = int(borrows)
    return parts


def _multiply_columns(a: int, k: int) -> list[str]:
    parts, carry = [], 0
    for x in _digits(a):
        product = x * k + carry
        parts.append(f"{x} * {k}{f' + {carry}' if carry else ''} = {product}")
        carry = product // 10
    return parts


def _divide_long(a: int, k: int) -> list[str]:
    digits = [int(d) for d in str(a)]
    current, parts = 0, []
    for i, d in enumerate(digits):
        current = current * 10 + d
        if current < k and not parts and i < len(digits) - 1:
            continue  # bring down the next digit before the first division
        quotient, rest = divmod(current, k)
        last = i == len(digits) - 1
        parts.append(f"{current} / {k} = {quotient}" + ("" if last else f" r {rest}"))
        current = rest
    return parts


def working_line(a: int, op: str, b: int, c: int, working: str = "columns") -> str:
    """One working line for ``a op b = c`` (``c`` as given: a deliberate slip stays a slip).

    ``working_line(37, "+", 13, 50)`` -> ``"37 + 13: 7 + 3 = 10, 3 + 1 + 1 = 5, so 37 + 13 = 50."``;
    with ``working="plain"`` -> ``"37 + 13 = 50."``.
    """
    plain = f"{a} {op} {b} = {c}."
    if working == "plain":
        return plain
    if op == "+" and max(a, b) >= 10:
        parts = _add_columns(a, b)
    elif op == "-" and a >= 10:
        parts = _subtract_columns(a, b)
    elif op == "*" and max(a, b) >= 10:
        parts = _multiply_columns(a, b) if b < 10 else _multiply_columns(b, a)
    elif op == "/" and b < 10 and a >= 10 * b:
        parts = _divide_long(a, b)
    else:
        return plain
    return f"{a} {op} {b}: {', '.join(parts)}, so {plain}"
