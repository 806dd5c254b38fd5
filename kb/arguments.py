"""Checks on the numbers the Python API takes (``k``, ``top_k``, ``limit``, ``threshold``), each failing as one
``InvalidRequestError`` line that names the argument: a float, a bool, NaN or a number past what SQL takes would
otherwise fail as a ``TypeError`` or ``OverflowError`` deep inside a library, or be taken silently (``k=True`` as 1,
``threshold=nan`` as never answering)."""

from __future__ import annotations

import operator

from kb.errors import InvalidRequestError


def whole_number(value: object, name: str, most: int, least: int = 1) -> int:
    """``value`` when it is a whole number (a Python or numpy integer, not a bool) from ``least`` to ``most``."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        number = None
    if number is None or not least <= number <= most:
        raise InvalidRequestError(f"{name} must be between {least:,} and {most:,}, a whole number (got "
                                  f"{repr(value)[:40]})")
    return number


def fraction(value: object, name: str) -> float:
    """``value`` when it is a real number from 0 to 1 (a probability; NaN and infinities are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise InvalidRequestError(f"{name} must be a number from 0 to 1 (got {repr(value)[:40]})")
    return float(value)
