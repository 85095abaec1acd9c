"""Sign-in throttling: failed passwords counted per user name and per client address in a sliding window, and a
cap on password checks running at once, so guessing is slow and cannot starve a signed-in operator's requests.

Unknown user names are counted exactly like known ones, so a lockout tells a guesser nothing about who exists.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from dashboards.web.config import LoginLimits

Scope = Literal["user", "address"]
MAX_KEYS = 10_000  # per scope: memory stays bounded however many names or addresses a guesser tries
KEY_CHARS = 128


@dataclass(frozen=True)
class Refusal:
    """Sign-in is refused for one user name or one address until retry_after_s has passed."""

    scope: Scope
    key: str
    retry_after_s: int

    @property
    def message(self) -> str:
        """The one line a user sees."""
        return f"too many failed sign-ins for this {self.scope}; try again in {self.retry_after_s} s"


class _Failures:
    """Failure times per key within a sliding window, for the most recently failing MAX_KEYS keys."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._times: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._times.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._times[key]
        return times

    def retry_after(self, key: str, now: float) -> float | None:
        """Seconds until key may try again, None when it may now."""
        times = self._recent(key, now)
        if len(times) < self.limit:
            return None
        return times[len(times) - self.limit] + self.window_s - now

    def add(self, key: str, now: float) -> bool:
        """Count one failure; True when this one reached the limit (the key is refused from now)."""
        times = self._recent(key, now)
        times.append(now)
        self._times[key] = times
        self._times.move_to_end(key)
        while len(self._times) > MAX_KEYS:
            self._times.popitem(last=False)
        return len(times) == self.limit

    def clear(self, key: str) -> None:
        """Forget key's failures."""
        self._times.pop(key, None)


def _keys(user: str, address: str) -> tuple[tuple[Scope, str], ...]:
    return ("user", user[:KEY_CHARS]), ("address", address[:KEY_CHARS])


class LoginThrottle:
    """Decides whether a sign-in may be tried, and counts how it went."""

    def __init__(self, limits: LoginLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self._scopes: dict[Scope, _Failures] = {
            "user": _Failures(limits.max_failures_per_user, limits.window_s),
            "address": _Failures(limits.max_failures_per_address, limits.window_s),
        }
        self._clock = clock
        self._lock = threading.Lock()

    def check(self, user: str, address: str) -> Refusal | None:
        """A refusal while the user name or the address has too many recent failures (a right password included)."""
        now = self._clock()
        with self._lock:
            for scope, key in _keys(user, address):
                wait = self._scopes[scope].retry_after(key, now)
                if wait is not None:
                    return Refusal(scope, key, max(1, math.ceil(wait)))
        return None

    def failed(self, user: str, address: str) -> list[Refusal]:
        """Count a wrong password; the refusals this failure started (to audit once per lockout)."""
        now = self._clock()
        started: list[Refusal] = []
        with self._lock:
            for scope, key in _keys(user, address):
                failures = self._scopes[scope]
                if failures.add(key, now):
                    wait = failures.retry_after(key, now) or failures.window_s
                    started.append(Refusal(scope, key, max(1, math.ceil(wait))))
        return started

    def succeeded(self, user: str) -> None:
        """A right password clears the user name's failures (the address keeps its count)."""
        with self._lock:
            self._scopes["user"].clear(user[:KEY_CHARS])


class LoginGate:
    """At most `limit` password checks at once; one more is turned away at once instead of queueing."""

    def __init__(self, limit: int) -> None:
        self._slots = threading.BoundedSemaphore(limit)

    def try_enter(self) -> bool:
        """Take a slot if one is free."""
        return self._slots.acquire(blocking=False)

    def leave(self) -> None:
        """Give the slot back."""
        self._slots.release()
