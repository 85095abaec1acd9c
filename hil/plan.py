"""Contract for hardware-in-the-loop runs: where the agent runs (target) and which network faults hit it when (plan).

A FaultPlan is an ordered list of steps on one clock that starts when the plan is applied. A step with
`duration_s` undoes itself after that long (link back up, shaping and delay removed, stall released), so a plan
reads like a script of the outage. `timeline()` expands a plan into the exact actions a harness performs.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from hil.errors import HilError

# One plan runs at most this long: a harness holds namespaces, links and brokers for the whole plan.
MAX_PLAN_S = 3600.0
# Linux IFNAMSIZ is 16 including the NUL.
_IFNAME = r"^[A-Za-z0-9_.-]{1,15}$"


class _Step(BaseModel):
    """Fields every step has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at_s: float = Field(ge=0, le=MAX_PLAN_S, description="Seconds after the plan starts when the fault begins.")


class _TimedStep(_Step):
    """A fault that can undo itself after a while."""

    duration_s: float | None = Field(
        default=None, gt=0, le=MAX_PLAN_S, description="Undo the fault this many seconds later; None: it stays."
    )


class LinkDown(_TimedStep):
    """Take the agent's link down (carrier lost: every packet dropped, sockets stay open)."""

    kind: Literal["link_down"] = Field(default="link_down", description="Fault kind.")


class LinkUp(_Step):
    """Bring the agent's link back up."""

    kind: Literal["link_up"] = Field(default="link_up", description="Fault kind.")


class RateLimit(_TimedStep):
    """Shape the link with a token bucket (tbf) in both directions."""

    kind: Literal["rate_limit"] = Field(default="rate_limit", description="Fault kind.")
    rate_kbit: float = Field(gt=0, description="Sustained rate in kbit/s (1000 bit/s).")
    burst_bytes: int = Field(
        default=3200, ge=1600, le=16 * 1024 * 1024, description="Bucket size; at least one full-size packet."
    )
    latency_ms: float = Field(
        default=500, gt=0, le=60_000, description="Longest a packet may wait in the queue before it is dropped."
    )


class Delay(_TimedStep):
    """Hold every chunk of traffic for a random time around `ms` (order is kept)."""

    kind: Literal["delay"] = Field(default="delay", description="Fault kind.")
    ms: float = Field(ge=0, le=60_000, description="Mean added delay per chunk in milliseconds.")
    jitter_ms: float = Field(default=0, ge=0, description="Delay varies uniformly within ms +/- jitter_ms.")

    @model_validator(mode="after")
    def _jitter_within_delay(self) -> Delay:
        if self.jitter_ms > self.ms:
            raise ValueError(f"jitter_ms ({self.jitter_ms:g}) must not exceed ms ({self.ms:g}): delays cannot be < 0")
        return self


class DropConnections(_Step):
    """Reset every open connection at once (the peer sees RST), as a NAT or firewall flush does."""

    kind: Literal["drop_connections"] = Field(default="drop_connections", description="Fault kind.")


class Stall(_Step):
    """Black-hole traffic for a while without closing anything, as a dead route or stuck middlebox does."""

    kind: Literal["stall"] = Field(default="stall", description="Fault kind.")
    duration_s: float = Field(gt=0, le=MAX_PLAN_S, description="How long nothing gets through.")


class Clear(_Step):
    """Remove every fault in force: link up, no shaping, no delay, no stall."""

    kind: Literal["clear"] = Field(default="clear", description="Fault kind.")


Step = Annotated[
    LinkDown | LinkUp | RateLimit | Delay | DropConnections | Stall | Clear,
    Field(discriminator="kind"),
]
FaultKind = Literal["link_down", "link_up", "rate_limit", "delay", "drop_connections", "stall", "clear"]


class FaultPlan(BaseModel):
    """Faults to inject on the agent's path to the broker and the object store, in order on one clock."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="plan", min_length=1, max_length=100, description="Label for logs and reports.")
    steps: list[Step] = Field(min_length=1, max_length=1000, description="Steps in the order they start.")

    @field_validator("steps")
    @classmethod
    def _ordered(cls, v: list[Any]) -> list[Any]:
        for i in range(1, len(v)):
            if v[i].at_s < v[i - 1].at_s:
                raise ValueError(
                    f"steps must be in start order: step {i} ({v[i].kind}) starts at {v[i].at_s:g} s, "
                    f"before step {i - 1} ({v[i - 1].kind}) at {v[i - 1].at_s:g} s"
                )
        return v

    @model_validator(mode="after")
    def _bounded(self) -> FaultPlan:
        if self.end_s > MAX_PLAN_S:
            raise ValueError(f"the plan ends at {self.end_s:g} s; a plan may last at most {MAX_PLAN_S:g} s")
        return self

    @property
    def end_s(self) -> float:
        """When the last fault starts or undoes itself."""
        return max(s.at_s + (getattr(s, "duration_s", None) or 0.0) for s in self.steps)


class NetnsTarget(BaseModel):
    """The agent runs in a local network namespace joined to the host by a veth pair."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["netns"] = Field(default="netns", description="Target kind.")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Network namespace name (ip netns).")
    host_if: str = Field(pattern=_IFNAME, description="Host end of the veth pair.")
    ns_if: str = Field(pattern=_IFNAME, description="Namespace end of the veth pair.")
    host_addr: ipaddress.IPv4Interface = Field(description="Host end address with prefix, e.g. 10.213.4.1/30.")
    ns_addr: ipaddress.IPv4Interface = Field(description="Namespace end address with prefix, e.g. 10.213.4.2/30.")

    @model_validator(mode="after")
    def _one_subnet(self) -> NetnsTarget:
        if self.host_addr.network != self.ns_addr.network:
            raise ValueError(f"host_addr {self.host_addr} and ns_addr {self.ns_addr} must share one subnet")
        if self.host_addr.ip == self.ns_addr.ip:
            raise ValueError(f"host_addr and ns_addr are both {self.host_addr.ip}; the two ends need distinct ones")
        if self.host_if == self.ns_if:
            raise ValueError(f"host_if and ns_if are both {self.host_if!r}")
        return self


class SshTarget(BaseModel):
    """The agent runs on a real device reached over SSH (hil.ssh_target.SshDevice drives one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["ssh"] = Field(default="ssh", description="Target kind.")
    host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:-]+$", description="Device address.")
    port: int = Field(default=22, ge=1, le=65535, description="SSH port.")
    user: str = Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$", description="Login user on the device.")
    key_path: Path = Field(description="Private key file used to log in.")


Target = Annotated[NetnsTarget | SshTarget, Field(discriminator="kind")]


class HilRun(BaseModel):
    """A fault plan bound to the target it runs against."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: Target = Field(description="Where the agent under test runs.")
    plan: FaultPlan = Field(description="Faults injected on its network path.")


@dataclass(frozen=True)
class Action:
    """One thing a harness does at one moment: start a step's fault, or undo it when its duration ends."""

    at_s: float
    step: LinkDown | LinkUp | RateLimit | Delay | DropConnections | Stall | Clear
    undo: bool


def timeline(plan: FaultPlan) -> list[Action]:
    """Every action of a plan in the order to perform it; at one instant undos come first, then starts in plan
    order, so `rate_limit 0-5 s` followed by `stall at 5 s` never has both at once."""
    keyed = [((s.at_s, 1, i), Action(s.at_s, s, False)) for i, s in enumerate(plan.steps)]
    for i, s in enumerate(plan.steps):
        if d := getattr(s, "duration_s", None):
            keyed.append(((s.at_s + d, 0, i), Action(s.at_s + d, s, True)))
    return [a for _, a in sorted(keyed, key=lambda ka: ka[0])]


_RUN = TypeAdapter(HilRun)


def parse_plan(data: str | bytes | dict[str, Any]) -> FaultPlan:
    """A FaultPlan from JSON text or a mapping, with every problem named in one HilError."""
    try:
        raw = json.loads(data) if isinstance(data, str | bytes) else data
        return FaultPlan.model_validate(raw)
    except json.JSONDecodeError as exc:
        raise HilError(f"fault plan is not valid JSON: {exc}") from exc
    except ValidationError as exc:
        raise HilError(f"invalid fault plan: {exc}") from exc


def parse_run(data: str | bytes | dict[str, Any]) -> HilRun:
    """A HilRun (target + plan) from JSON text or a mapping, with every problem named in one HilError."""
    try:
        return _RUN.validate_json(data) if isinstance(data, str | bytes) else _RUN.validate_python(data)
    except ValidationError as exc:
        raise HilError(f"invalid HIL run: {exc}") from exc
