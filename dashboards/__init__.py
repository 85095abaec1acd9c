"""Operators' views generated from the metric table (shared.metrics): Grafana today, more as they arrive."""
