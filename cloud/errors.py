"""The cloud stage's exception family."""

from __future__ import annotations

from shared.errors import EdgeferryError


class CloudError(EdgeferryError):
    """Base of trainer, export and publish errors; the CLI prints one line and exits non-zero."""


class DataError(CloudError):
    """The data set is missing, empty, or has class folders without images."""


class ExportError(CloudError):
    """ONNX export, quantization or engine build failed."""


class GateError(CloudError):
    """No variant passed its verification gate, so nothing was published."""


class PublishError(CloudError):
    """The package could not be published to the store."""


class ModelRefused(CloudError):
    """An external model file (edgeferry package) is unsafe, malformed or does not fit its labels and task."""
