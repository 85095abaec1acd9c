"""JSON a browser's JSON.parse accepts: no Infinity or NaN, whatever a device managed to get stored. No I/O."""

from __future__ import annotations

import json
import math
from typing import Any


def finite(obj: Any) -> Any:
    """obj with every non-finite float replaced by None (dicts, lists and tuples walked)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def finite_figures(values: dict[str, Any]) -> dict[str, float]:
    """Only the finite numbers of a stored figure dict (a poisoned row read back shows the rest as absent)."""
    out: dict[str, float] = {}
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        try:
            f = float(v)
        except OverflowError:
            continue
        if math.isfinite(f):
            out[k] = f
    return out


def dumps(obj: Any) -> tuple[str, bool]:
    """(strict JSON text, whether anything had to be dropped to make it so)."""
    try:
        return json.dumps(obj, allow_nan=False), False
    except ValueError:
        return json.dumps(finite(obj), allow_nan=False), True
