"""Who a rollout's cohorts (canary and control) are drawn from: the control plane's group assignments.

A device names its groups in its own state; that claim alone does not put it into a rollout, since any device can
name any group. Its assigned groups (`edgeferry fleet groups assign`) do, and so do its own groups where the fleet
config says to trust them (`controller.trust_device_groups`, off by default). A rollout keeps the rule it was
started with, so a config change never reshapes the cohorts of a rollout under way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fleet.registry import DeviceRecord

# Where a rollout records its cohort rule (in its stored baseline, beside the figures it started from).
TRUST_KEY = "trust_device_groups"


def trusts_device_groups(baseline: Mapping[str, Any]) -> bool:
    """The cohort rule a rollout was started with (rollouts started before the rule existed: assigned only)."""
    return bool(baseline.get(TRUST_KEY, False))


def in_cohorts(record: DeviceRecord, group: str, trust_device_groups: bool) -> bool:
    """Whether a device belongs to the group for a rollout: assigned here, or claimed and claims are trusted."""
    return group in record.assigned_groups or (trust_device_groups and group in record.reported_groups)


def members(records: Iterable[DeviceRecord], group: str, trust_device_groups: bool) -> list[DeviceRecord]:
    """The devices a rollout of `group` may draw canary and control devices from."""
    return [r for r in records if in_cohorts(r, group, trust_device_groups)]


def claimants(records: Iterable[DeviceRecord], group: str, trust_device_groups: bool) -> list[str]:
    """Devices that name the group in their own state but are left out of its cohorts, by id."""
    return sorted(r.device_id for r in records
                  if group in r.reported_groups and not in_cohorts(r, group, trust_device_groups))


def claim_reason(group: str) -> str:
    """Why a claimant is left out, for status."""
    return (f"names group {group} in its own state without an assignment here: left out of the cohorts "
            f"('edgeferry fleet groups assign DEVICE {group}' adds it)")
