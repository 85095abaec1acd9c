"""What a HIL run records: one Row per scenario x variant x target, with figures, checks against the issue's
targets, and the series its plots are drawn from. JSON on disk is this model's dump."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["pass", "fail", "error", "n/a"]

# The targets the report prints as met / not met, and which check names count towards each.
TARGETS: dict[str, str] = {
    "zero_telemetry_lost": "zero telemetry lost",
    "verified_restarts": "20/20 restarts serve a verified model",
    "never_wrong_model": "never a wrong or unverified model served",
    "zero_swap_frames_lost": "zero frames lost in a swap",
}


class Check(BaseModel):
    """One pass/fail statement about a row."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Short id; a TARGETS key where it counts towards one.")
    met: bool = Field(description="Whether it held.")
    detail: str = Field(default="", description="The figures behind it, for a reader.")


class Row(BaseModel):
    """One scenario run for one variant on one target."""

    model_config = ConfigDict(extra="forbid")

    scenario: str = Field(description="Scenario name.")
    variant: str = Field(description="Variant forced on the agent (fp32, fp16, int8, auto).")
    target: str = Field(description="Target kind: netns or ssh.")
    link: str = Field(default="clean", description="Link condition the figures were taken under.")
    status: Status = Field(default="pass", description="pass, fail (a check failed), error (the run broke), n/a.")
    duration_s: float = Field(default=0.0, description="Wall time of the scenario.")
    figures: dict[str, float | int | str | bool | None] = Field(default_factory=dict, description="Measured values.")
    checks: list[Check] = Field(default_factory=list, description="Statements checked.")
    series: dict[str, list[list[float]]] = Field(
        default_factory=dict, description="Named point lists [[x, y], ...] the plots are drawn from."
    )
    notes: list[str] = Field(default_factory=list, description="How it was measured, and its limits.")
    error: str | None = Field(default=None, description="Why the run broke (status error) or does not apply.")

    def check(self, name: str, met: bool, detail: str = "") -> None:
        """Record a check; a failed one fails the row."""
        self.checks.append(Check(name=name, met=bool(met), detail=detail))
        if not met and self.status == "pass":
            self.status = "fail"


class RunReport(BaseModel):
    """Everything one `edgeferry hil run` measured."""

    model_config = ConfigDict(extra="forbid")

    started_at: str = Field(description="UTC start time, ISO 8601.")
    machine: str = Field(description="Where it ran (CPU, cores, kernel).")
    package: str = Field(description="Which package was deployed and where it came from.")
    package_bytes: int = Field(description="Bytes of every file of one package version.")
    rows: list[Row] = Field(default_factory=list, description="One per scenario x variant x target.")
    notes: list[str] = Field(default_factory=list, description="Run-wide notes (what could not be done here).")

    def targets(self) -> dict[str, tuple[bool | None, str]]:
        """Each target: met (None when no row checked it) and the rows behind the verdict."""
        out: dict[str, tuple[bool | None, str]] = {}
        for key in TARGETS:
            checks = [(r, c) for r in self.rows for c in r.checks if c.name == key]
            if not checks:
                out[key] = (None, "not measured")
                continue
            failed = [f"{r.scenario}/{r.variant}/{r.target}: {c.detail}" for r, c in checks if not c.met]
            out[key] = (not failed, "; ".join(failed) if failed else f"{len(checks)} checks held")
        return out
