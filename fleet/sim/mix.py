"""A simulated fleet's behaviour mix: 'NAME=SHARE,...' parsed, and spread over device indices deterministically.

Shared by the frame behaviours (`behaviour.py`) and the sensor ones (`sensor.py`), which differ only in their
names, the default that takes the rest of 1.0, and the seed of the shuffle.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from fleet.errors import SimulatorError

N = TypeVar("N", bound=str)


def parse_shares(text: str, names: Sequence[N], default: N, what: str) -> dict[N, float]:
    """'a=0.8,b=0.1' -> shares; the rest of 1.0 (if any) goes to default. SimulatorError naming the bad part."""
    mix: dict[N, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in names:
            raise SimulatorError(f"bad {what} {part!r}: use NAME=SHARE with NAME one of {', '.join(names)}")
        try:
            share = float(value)
        except ValueError as exc:
            raise SimulatorError(f"bad share in {part!r}: not a number") from exc
        if not 0 <= share <= 1:
            raise SimulatorError(f"bad share in {part!r}: must be between 0 and 1")
        key: N = name  # type: ignore[assignment]  # checked against names above
        mix[key] = mix.get(key, 0.0) + share
    total = sum(mix.values())
    if total > 1 + 1e-9:
        raise SimulatorError(f"{what} shares add up to {total:.3g}, above 1")
    if total < 1:
        mix[default] = mix.get(default, 0.0) + 1 - total
    return mix


def spread(mix: dict[N, float], names: Sequence[N], n: int, seed: int) -> list[N]:
    """Deterministic name per device index: exact counts by largest remainder, shuffled across the fleet."""
    raw = {b: share * n for b, share in mix.items()}
    counts = {b: int(v) for b, v in raw.items()}
    for b in sorted(raw, key=lambda b: raw[b] - counts[b], reverse=True)[: n - sum(counts.values())]:
        counts[b] += 1
    out: list[N] = [b for b in names for _ in range(counts.get(b, 0))]
    random.Random(seed).shuffle(out)
    return out
