"""Sensor models in the cloud: 1-D window classifiers and reconstruction-error anomaly scorers, gated and published."""
