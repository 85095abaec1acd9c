"""edgeferry: edge-to-cloud ML deployment pipeline."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgeferry")  # pyproject.toml is the one place the version is written
except PackageNotFoundError:  # a checkout that was never installed
    __version__ = "0+unknown"
