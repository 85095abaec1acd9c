"""The plan's gate kind in sensor terms: the shift of an anomaly model's score distribution, canary against control.

Kept apart from plan.py so the plan's gate union can name it without the sensor gates' judging code (which needs
the plan's other kinds) coming along.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from fleet.rollout.psi_gate import PsiSettings


class ScorePsiGate(PsiSettings):
    """Shift of the anomaly score distribution (windows per score bin, in threshold units: shared/score_bins.py) of
    the canary cohort against the control cohort in the same window, as a PSI with an interval."""

    what: ClassVar[str] = "score"

    kind: Literal["score_psi"] = Field(description="Gate kind: population stability index of the score bins.")
    max_psi: float = Field(default=0.25, gt=0, description="Largest PSI allowed (0.1 slight, 0.25 major shift).")
