"""The device page's detection reads: latest object snapshot, object events and zone counts over time.

Mounted by create_app when the web app has an ObjectBuffer; every route needs a signed-in user and a device the
registry knows (404 otherwise), like the other device reads.
"""

# No `from __future__ import annotations`: FastAPI resolves the route signatures, which use local aliases.
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from dashboards.web.objects import ObjectBuffer, ObjectEventRow, SnapshotView, ZoneSeries

MAX_MS = 253_402_300_799_999


def object_routes(objects: ObjectBuffer, user: Callable[..., Any], known_device: Callable[[str], str]) -> APIRouter:
    """The routes over one buffer; `user` is the app's sign-in dependency, `known_device` its 404 check."""
    router = APIRouter(tags=["detections"])
    User = Annotated[Any, Depends(user)]

    @router.get("/api/devices/{device_id}/objects/snapshot", response_model=SnapshotView | None)
    def snapshot(p: User, device_id: str) -> SnapshotView | None:
        """The latest object snapshot the device sent (a cropped JPEG and the object's box), or null."""
        return objects.snapshot(known_device(device_id))

    @router.get("/api/devices/{device_id}/objects/events", response_model=list[ObjectEventRow])
    def object_events(p: User, device_id: str, limit: Annotated[int, Query(ge=1, le=500)] = 50
                      ) -> list[ObjectEventRow]:
        """The device's latest object events (new, update, end), newest first."""
        return objects.events(known_device(device_id), limit)

    @router.get("/api/devices/{device_id}/objects/zones", response_model=ZoneSeries)
    def zones(p: User, device_id: str,
              since_ms: Annotated[int, Query(ge=0, le=MAX_MS, description="Reports after this Unix ms.")] = 0
              ) -> ZoneSeries:
        """Objects per zone and per zone/label at each telemetry report the web app received."""
        return objects.zones(known_device(device_id), since_ms)

    return router
