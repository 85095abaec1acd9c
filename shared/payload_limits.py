"""Bounds for what devices send: integers within 64 bits, finite numbers, short clean strings, small JSON trees.

Devices are less trusted than operators: every field of a device-sent payload is typed with one of these, so a
value a database, a JSON reader in a browser or an int() cannot take is refused at the door, never stored.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints

INT64_MAX = 2**63 - 1
MAX_TEXT = 1024
MAX_JSON_DEPTH = 6
MAX_JSON_ITEMS = 256

# Counters, sequence numbers, versions and Unix-ms times: whole numbers a BIGINT column holds.
UInt64 = Annotated[int, Field(ge=0, le=INT64_MAX)]
# Ids that appear in topics and keys (device, model, group, fleet): as shared.names.check_ident.
Ident = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
# Short machine tokens (boot ids, versions, backends, precisions, digests): no spaces, no markup.
Token = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,63}$")]
LongToken = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$")]
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(v: str, limit: int = MAX_TEXT) -> str:
    """Human text (errors, labels, GPU names): bounded, valid UTF-8, no control characters but tab and newline."""
    if len(v) > limit:
        raise ValueError(f"text of {len(v)} characters, over the {limit} limit")
    if _CONTROL.search(v):
        raise ValueError("text holds control characters")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("text is not valid UTF-8 (a lone surrogate)") from exc
    return v


Text = Annotated[str, AfterValidator(clean_text)]
Label = Annotated[str, StringConstraints(min_length=1), AfterValidator(lambda v: clean_text(v, 128))]


def _check_tree(v: Any, depth: int, budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError(f"holds more than {MAX_JSON_ITEMS} values")
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if v is None or isinstance(v, bool):
        return
    if isinstance(v, int):
        if not -(2**63) <= v <= INT64_MAX:
            raise ValueError("holds an integer beyond 64 bits")
    elif isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("holds NaN or an infinite number")
    elif isinstance(v, str):
        clean_text(v, MAX_TEXT)
    elif isinstance(v, list | tuple):
        for item in v:
            _check_tree(item, depth + 1, budget)
    elif isinstance(v, dict):
        for key, item in v.items():
            clean_text(str(key), 128)
            _check_tree(item, depth + 1, budget)
    else:
        raise ValueError(f"holds a {type(v).__name__}, not JSON")


def bounded_tree(v: dict[str, Any]) -> dict[str, Any]:
    """A small free-form JSON object (hardware facts, command results): bounded in items and depth, finite."""
    _check_tree(v, 0, [MAX_JSON_ITEMS])
    return v


BoundedDict = Annotated[dict[str, Any], AfterValidator(bounded_tree)]
