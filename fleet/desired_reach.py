"""Which devices the fleet's desired state can move for a model: a device serving it as a further model (its
config's `models:`, beside sync.model) follows that model's channel pointer and refuses a desired state naming it,
so a deploy or rollout that counts on it would only be refused on the device, one device at a time."""

from __future__ import annotations

from collections.abc import Iterable

from fleet.errors import FleetError
from fleet.registry import DeviceRecord

SHOWN = 5


class FurtherModelError(FleetError):
    """The model is a further model on some of the target devices: the desired state cannot move it there."""


def check_desired_reach(model: str, devices: Iterable[DeviceRecord]) -> None:
    """FurtherModelError naming the devices that serve `model` only beside their sync.model, and what moves it."""
    side = [d.device_id for d in devices
            if d.model_name != model and any(m.get("name") == model for m in d.models)]
    if not side:
        return
    shown = ", ".join(side[:SHOWN]) + (f" and {len(side) - SHOWN} more" if len(side) > SHOWN else "")
    raise FurtherModelError(
        f"{model} is a further model (`models:`) on {shown}: the fleet's desired state moves only a device's "
        f"sync.model; move {model} there by its signed channel pointer ('edgeferry publish-pointer --name {model} "
        f"--channel C') or a signed command ('edgeferry cmd DEVICE deploy model={model} version=V')"
    )
