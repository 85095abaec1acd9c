"""The detection gate: a variant's mAP@.5:.95 may drop from its reference by at most the configured budget."""

from __future__ import annotations

from dataclasses import dataclass

from cloud.detection.coco_eval import MapScores

# mAP values are ratios; a drop exactly at the budget must pass despite float rounding.
_SLACK = 1e-9


@dataclass(frozen=True)
class MapGate:
    """One variant's verdict with the figures behind it; `reason` states them whether it passed or not."""

    precision: str
    passed: bool
    reason: str
    scores: MapScores
    reference: MapScores
    agreement: float


def map_gate(precision: str, scores: MapScores, reference: MapScores, budget: float, agreement: float,
             reference_name: str = "fp32") -> MapGate:
    """Pass when mAP@.5:.95 is at most `budget` below the reference's (both 0-1)."""
    drop = reference.map50_95 - scores.map50_95
    figures = (f"mAP@.5:.95 {scores.map50_95:.4f} vs {reference_name} {reference.map50_95:.4f} "
               f"(drop {drop * 100:.2f} points, budget {budget * 100:.2f}); mAP@.5 {scores.map50:.4f} vs "
               f"{reference.map50:.4f}; detection F1 vs {reference_name} {agreement:.4f}")
    passed = drop <= budget + _SLACK
    return MapGate(precision, passed, figures if passed else f"mAP drop over budget: {figures}", scores, reference,
                   agreement)
