"""Checks on the arguments the Python API takes (``k``, ``top_k``, ``limit``, ``threshold``, ``filters``), each
failing as one ``InvalidRequestError`` line that names the argument: a float, a bool, NaN, a number past what SQL
takes or a value of another type would otherwise fail as a ``TypeError``, ``AttributeError`` or ``OverflowError``
deep inside a library, or be taken silently (``k=True`` as 1, ``threshold=nan`` as never answering)."""

from __future__ import annotations

import operator
from collections.abc import Mapping

from pydantic import ValidationError

from kb.errors import InvalidRequestError
from kb.types import Filters


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


def search_filters(value: object) -> Filters | None:
    """``value`` as search filters: a ``Filters``, a mapping of their names to values, or None for none."""
    if value is None or isinstance(value, Filters):
        return value
    if not isinstance(value, Mapping):
        raise InvalidRequestError(f"filters must be a mapping of filter names to values, or Filters (got "
                                  f"{type(value).__name__})")
    try:
        return Filters.model_validate(dict(value))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, problem['loc'])) or 'filters'}: {problem['msg']}"
                             for problem in error.errors())
        raise InvalidRequestError(f"invalid filters: {problems[:500]}") from None
