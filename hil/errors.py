"""The HIL harness's exception family."""

from __future__ import annotations

from shared.errors import EdgeferryError


class HilError(EdgeferryError):
    """A fault plan or HIL target is invalid, or a harness could not apply a fault."""
