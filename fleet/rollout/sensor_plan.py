"""The plan's gate kind in sensor terms: the shift of an anomaly model's score distribution, canary against control.

Kept apart from plan.py so the plan's gate union can name it without the sensor gates' judging code (which needs
the plan's other kinds) coming along.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ScorePsiGate(BaseModel):
    """Shift of the anomaly score distribution (windows per score bin, in threshold units: shared/score_bins.py) of
    the canary cohort against the control cohort in the same window, as a PSI with an interval."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["score_psi"] = Field(description="Gate kind: population stability index of the score bins.")
    max_psi: float = Field(default=0.25, gt=0, description="Largest PSI allowed (0.1 slight, 0.25 major shift).")
    min_results: int = Field(
        default=200, ge=1, description="Scored windows each cohort must have counted in the window before it is judged."
    )
    confidence: float = Field(default=0.95, ge=0.5, lt=1, description="One-sided confidence of the PSI interval: "
                              "fail when its lower bound exceeds max_psi, pass when its upper bound does not.")
    min_windows: int = Field(default=6, ge=2, description="Telemetry windows each cohort must have.")

    @property
    def label(self) -> str:
        """Readable gate name for status and history."""
        return f"score psi <= {self.max_psi:g}"
