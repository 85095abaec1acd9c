"""The id prefix of a stream's objects and alerts, so ids stay unique per device when several streams count alike.

Ids are Tokens of at most 64 characters: a stream name could not fit, so each stream gets a number in the order it
first appears, never reused while the agent runs ('s<n>.'); the single source's stream keeps its ids unprefixed.
"""

from __future__ import annotations

from shared.streams import DEFAULT_STREAM


class StreamIds:
    """Numbers streams as they first appear; not thread-safe (its owner's lock covers it)."""

    def __init__(self) -> None:
        self._numbers: dict[str, int] = {}

    def prefix(self, stream: str) -> str:
        """'s<n>.' for a named stream ('' for the single source's), numbering the stream on its first call."""
        number = self._numbers.setdefault(stream, len(self._numbers))
        return "" if stream == DEFAULT_STREAM else f"s{number}."
