"""The web app's config: where it binds, who may sign in, API tokens for scripts, the live batch and alert rules."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.metrics import BY_NAME
from shared.names import check_ident

Role = Literal["viewer", "operator"]
Op = Literal["<", "<=", ">", ">="]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserConfig(_Section):
    """One person who may sign in."""

    name: str = Field(min_length=1, max_length=64, description="Login name.")
    role: Role = Field(description="viewer reads; operator may also act (ping, deploy, rollback, rollouts).")
    password_hash: str = Field(
        description="scrypt hash from `python -m dashboards.web.passwords` (scrypt$n$r$p$salt$hash); never plain."
    )

    @field_validator("password_hash")
    @classmethod
    def _hashed(cls, v: str) -> str:
        if not v.startswith("scrypt$") or v.count("$") != 5:
            raise ValueError("must be a scrypt hash from `python -m dashboards.web.passwords`, not a plain password")
        return v


class TokenConfig(_Section):
    """An API token for scripts (sent as `Authorization: Bearer <token>`)."""

    name: str = Field(min_length=1, max_length=64, description="Name the audit log records for its actions.")
    role: Role = Field(description="What the token may do.")
    token_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="sha256 hex of the token (`python -m dashboards.web.passwords --token`)."
    )


class OfflineRule(_Section):
    """Fires for a device that is offline or stale for longer than `for_s`."""

    kind: Literal["offline"] = Field(description="Rule kind.")
    name: str = Field(description="Rule name (topic level under alerts/).")
    for_s: float = Field(default=300.0, gt=0, description="Seconds since last seen before it fires.")

    _name = field_validator("name")(lambda cls, v: check_ident(v, "alert rule name"))


class MetricRule(_Section):
    """Fires while a declared telemetry figure of a device compares true against a threshold."""

    kind: Literal["metric"] = Field(description="Rule kind.")
    name: str = Field(description="Rule name (topic level under alerts/).")
    metric: str = Field(description="A figure declared in shared/metrics.py, e.g. e2e_ms_p95 or package_rejects.")
    op: Op = Field(description="Comparison that fires.")
    threshold: float = Field(description="Value compared against.")

    _name = field_validator("name")(lambda cls, v: check_ident(v, "alert rule name"))

    @field_validator("metric")
    @classmethod
    def _declared(cls, v: str) -> str:
        if v not in BY_NAME:
            raise ValueError(f"metric {v!r} is not declared in shared/metrics.py")
        return v


class ClassRule(_Section):
    """Fires when a device reports one of `labels` with a top-1 confidence at or above `min_score`."""

    kind: Literal["class"] = Field(description="Rule kind.")
    name: str = Field(description="Rule name (topic level under alerts/).")
    labels: list[str] = Field(min_length=1, description="Labels to watch (surveillance classes).")
    min_score: float = Field(default=0.5, ge=0, le=1, description="Confidence at or above which it fires.")
    window_s: float = Field(default=60.0, gt=0, description="How long a sighting keeps the alert firing.")

    _name = field_validator("name")(lambda cls, v: check_ident(v, "alert rule name"))


AlertRule = Annotated[OfflineRule | MetricRule | ClassRule, Field(discriminator="kind")]


def default_rules() -> list[OfflineRule | MetricRule | ClassRule]:
    """Rules a fleet gets when its config names none."""
    return [
        OfflineRule(kind="offline", name="offline", for_s=300.0),
        MetricRule(kind="metric", name="package_rejects", metric="package_rejects", op=">", threshold=0),
    ]


class WebConfig(_Section):
    """The `web` part of `fleet serve`."""

    enabled: bool = Field(default=True, description="Serve the web app beside the control plane.")
    host: str = Field(default="127.0.0.1", description="Address to bind; loopback unless a proxy fronts it.")
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port (0: any free port).")
    users: list[UserConfig] = Field(default_factory=list, description="People who may sign in.")
    api_tokens: list[TokenConfig] = Field(default_factory=list, description="Tokens for scripts.")
    session_ttl_s: float = Field(default=12 * 3600, gt=0, description="A sign-in lasts this long.")
    secure_cookies: bool = Field(default=False, description="Mark the session cookie Secure (behind HTTPS).")
    live_interval_s: float = Field(
        default=1.0, gt=0, le=1.0, description="The live channel sends one batch of changed rows this often."
    )
    history_s: float = Field(default=3600.0, gt=0, description="How much history the device page charts at first.")
    alerts: list[AlertRule] = Field(default_factory=default_rules, description="Alert rules over the metric table.")

    @model_validator(mode="after")
    def _unique(self) -> WebConfig:
        for what, names in (("user", [u.name for u in self.users]), ("API token", [t.name for t in self.api_tokens]),
                            ("alert rule", [r.name for r in self.alerts])):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{what} names must be unique; repeated: {', '.join(dup)}")
        return self
