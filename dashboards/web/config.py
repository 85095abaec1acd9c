"""The web app's config: where it binds, who may sign in, API tokens for scripts, the live batch and alert rules."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal
from urllib.parse import urlsplit

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


class ZoneRule(_Section):
    """Fires while an object of one of `labels` has stood in a detector's zone for longer than `for_s`."""

    kind: Literal["zone"] = Field(description="Rule kind.")
    name: str = Field(description="Rule name (topic level under alerts/).")
    zone: str = Field(description="Zone name, as in the device's detection.zones.")
    labels: list[str] = Field(default_factory=list, description="Labels watched (person, car); empty: any label.")
    for_s: float = Field(gt=0, le=30 * 86400, description="Seconds an object stays in the zone before it fires.")

    _name = field_validator("name")(lambda cls, v: check_ident(v, "alert rule name"))
    _zone = field_validator("zone")(lambda cls, v: check_ident(v, "zone name"))


AlertRule = Annotated[OfflineRule | MetricRule | ClassRule | ZoneRule, Field(discriminator="kind")]


def default_rules() -> list[OfflineRule | MetricRule | ClassRule | ZoneRule]:
    """Rules a fleet gets when its config names none."""
    return [
        OfflineRule(kind="offline", name="offline", for_s=300.0),
        MetricRule(kind="metric", name="package_rejects", metric="package_rejects", op=">", threshold=0),
    ]


class LoginLimits(_Section):
    """How many wrong passwords a user name or a client address may send before sign-in pauses for it."""

    max_failures_per_user: int = Field(
        default=5, ge=1, description="Failed sign-ins for one user name within window_s before it is refused (429)."
    )
    max_failures_per_address: int = Field(
        default=20, ge=1, description="Failed sign-ins from one client address within window_s before it is refused."
    )
    window_s: float = Field(
        default=900.0, gt=0, description="Sliding window: a failure stops counting this many seconds after it."
    )
    max_concurrent: int = Field(
        default=2, ge=1, le=64,
        description="Password checks run at once (each costs 16 MiB and ~50 ms); more answer 503 at once.",
    )


class WebConfig(_Section):
    """The `web` part of `fleet serve`."""

    enabled: bool = Field(default=True, description="Serve the web app beside the control plane.")
    host: str = Field(default="127.0.0.1", description="Address to bind; loopback unless a proxy fronts it.")
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port (0: any free port).")
    users: list[UserConfig] = Field(default_factory=list, description="People who may sign in.")
    api_tokens: list[TokenConfig] = Field(default_factory=list, description="Tokens for scripts.")
    session_ttl_s: float = Field(default=12 * 3600, gt=0, description="A sign-in lasts this long.")
    secure_cookies: bool | Literal["auto"] = Field(
        default="auto",
        description="Mark the session cookie Secure; auto: when the request came over HTTPS (directly, or through "
                    "a proxy in trusted_proxies that says X-Forwarded-Proto: https).",
    )
    public_url: str | None = Field(
        default=None, description="Where users reach the app, e.g. https://fleet.example.com (its host is allowed)."
    )
    allowed_hosts: list[str] | None = Field(
        default=None,
        description="Host headers the app answers (others get 400); '*.example.com' matches subdomains, '*' any. "
                    "Default: the bind address, localhost, 127.0.0.1, ::1 and public_url's host.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks of reverse proxies whose X-Forwarded-For/-Proto are believed.",
    )
    login: LoginLimits = Field(default_factory=LoginLimits, description="Sign-in throttling.")
    live_interval_s: float = Field(
        default=1.0, gt=0, le=1.0, description="The live channel sends one batch of changed rows this often."
    )
    history_s: float = Field(default=3600.0, gt=0, description="How much history the device page charts at first.")
    alerts: list[AlertRule] = Field(default_factory=default_rules, description="Alert rules over the metric table.")

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str | None) -> str | None:
        if v is not None and (urlsplit(v).scheme not in ("http", "https") or not urlsplit(v).hostname):
            raise ValueError(f"public_url must be an http(s) URL with a host (https://fleet.example.com); got {v!r}")
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for entry in v:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"trusted_proxies: {entry!r} is not an IP address or network ({exc})") from exc
        return v

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("allowed_hosts is empty, so nobody could reach the app; leave it out for the default")
        return None if v is None else [h.strip().lower() for h in v]

    def served_hosts(self) -> list[str]:
        """The Host names the app answers: allowed_hosts, or the bind address, loopback names and public_url's host."""
        if self.allowed_hosts is not None:
            return self.allowed_hosts
        hosts = [self.host.lower(), "localhost", "127.0.0.1", "::1"]
        if self.public_url is not None:
            hosts.append((urlsplit(self.public_url).hostname or "").lower())
        return list(dict.fromkeys(hosts))

    @model_validator(mode="after")
    def _unique(self) -> WebConfig:
        for what, names in (("user", [u.name for u in self.users]), ("API token", [t.name for t in self.api_tokens]),
                            ("alert rule", [r.name for r in self.alerts])):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{what} names must be unique; repeated: {', '.join(dup)}")
        return self
