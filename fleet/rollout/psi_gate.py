"""What the two PSI gate kinds share (class mix in plan.py, anomaly score bins in sensor_plan.py): the interval's
settings and the sample they need. Each kind adds its own `kind`, default threshold and label; neither is the
other's subclass, so the verdict tells them apart by type."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field


class PsiSettings(BaseModel):
    """A population stability index of the canary cohort's distribution against the control cohort's, with an
    interval: fail when its lower bound exceeds max_psi, pass when its upper bound does not, hold otherwise."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # What the distribution is, for the label: each kind names its own ("class-mix", "score").
    what: ClassVar[str]

    kind: str = Field(description="Gate kind.")
    max_psi: float = Field(default=0.2, gt=0, description="Largest PSI allowed (0.1 slight, 0.25 major shift).")
    min_results: int = Field(
        default=200, ge=1, description="Results (scored windows for an anomaly model) each cohort must have counted "
        "in the window before it is judged."
    )
    confidence: float = Field(default=0.95, ge=0.5, lt=1, description="One-sided confidence of the PSI interval: "
                              "fail when its lower bound exceeds max_psi, pass when its upper bound does not.")
    min_windows: int = Field(default=6, ge=2, description="Telemetry windows each cohort must have.")

    @property
    def label(self) -> str:
        """Readable gate name for status and history."""
        return f"{self.what} psi <= {self.max_psi:g}"
