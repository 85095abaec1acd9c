"""Values read back from the database made safe: a row written by an older version (or by hand) may hold NaN,
infinities, integers beyond 64 bits or the wrong type, and no read may fail or pass them on because of it."""

from __future__ import annotations

import math
from typing import Any

from shared.errors import InvalidNameError
from shared.names import check_ident

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_DEPTH = 8


def int64(v: Any) -> int | None:
    """An integer within 64 bits (a whole finite float within range counts), else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        v = int(v)
    return v if isinstance(v, int) and INT64_MIN <= v <= INT64_MAX else None


def finite(v: Any, low: float = -math.inf, high: float = math.inf) -> float | None:
    """A finite number within [low, high] as a float, else None."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    if isinstance(v, int) and not INT64_MIN <= v <= INT64_MAX:
        return None
    f = float(v)
    return f if math.isfinite(f) and low <= f <= high else None


def text(v: Any, limit: int = 1024) -> str | None:
    """A string within limit (longer ones cut), else None."""
    return v[:limit] if isinstance(v, str) else None


def ident(v: Any) -> str | None:
    """A name safe in topics and keys (shared.names.check_ident), else None."""
    try:
        return check_ident(v)
    except InvalidNameError:
        return None


def json_tree(v: Any, depth: int = 0) -> Any:
    """A JSON value with non-finite numbers and out-of-range integers dropped (None where nothing is left)."""
    if depth > MAX_DEPTH:
        return None
    if v is None or isinstance(v, bool | str):
        return v
    if isinstance(v, int | float):
        return int64(v) if isinstance(v, int) else finite(v)
    if isinstance(v, list):
        return [x for x in (json_tree(i, depth + 1) for i in v) if x is not None]
    if isinstance(v, dict):
        return {str(k): x for k, i in v.items() if (x := json_tree(i, depth + 1)) is not None}
    return None


def figures(v: Any) -> dict[str, float]:
    """Telemetry figures: name -> finite float; anything else dropped."""
    if not isinstance(v, dict):
        return {}
    return {str(k): f for k, x in v.items() if (f := finite(x)) is not None}


def counts(v: Any) -> dict[str, int]:
    """Class counts: label -> non-negative 64-bit integer; anything else dropped."""
    if not isinstance(v, dict):
        return {}
    return {str(k): n for k, x in v.items() if (n := int64(x)) is not None and n >= 0}
