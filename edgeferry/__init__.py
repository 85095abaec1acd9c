"""edgeferry: edge-to-cloud ML deployment pipeline."""

__version__ = "0.1.0"
