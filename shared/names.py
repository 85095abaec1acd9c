"""Validation of the names that reach file systems, object keys and MQTT topics."""

from __future__ import annotations

import re

from shared.errors import InvalidNameError

# Plain file names only: no separators, no leading dot, no "..", bounded length.
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Model names, fleet and device ids appear in object keys and MQTT topics: no '/', '+', '#'.
_IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_file_name(name: str) -> str:
    """Return name if it is a plain file name safe to join under a package directory."""
    if not isinstance(name, str) or not _FILE_NAME.match(name) or ".." in name:
        raise InvalidNameError(f"unsafe file name {name!r}: only plain names like 'model.fp32.onnx' are allowed")
    return name


def check_ident(name: str, what: str = "name") -> str:
    """Return name if it is safe in object keys and MQTT topics (no '/', '+', '#', spaces)."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise InvalidNameError(
            f"invalid {what} {name!r}: use 1-64 letters, digits, '_' or '-', starting with a letter or digit"
        )
    return name
