"""Values from Arrow, DuckDB and the control store as JSON-ready data."""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any

_PLAIN = (str, int, bool, type(None))


def jsonable(value: Any) -> Any:
    """Values from Arrow and the control store as JSON-ready data (NaN → null)."""
    if type(value) in _PLAIN:  # the common case first: this runs for every value shown
        return value
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):  # DuckDB's HUGEINT sums arrive as decimals
        return int(value) if value == value.to_integral_value() else float(value)
    return value
