"""Staged rollouts: plans, deterministic device selection, health and quality gates, verdicts and the controller."""
