"""Plain JSON from the numbers tumorlens computes (numpy scalars and arrays, tuples, NaN)."""

from __future__ import annotations

import math


def jsonable(value):
    """`value` as plain JSON types: dict keys to str, tuples and arrays to lists, numpy scalars to
    Python numbers, NaN and infinity to None (JSON has neither), anything else to str (paths)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return jsonable(value.tolist())
    return str(value)
