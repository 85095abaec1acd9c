"""The device page's streams: a multi-stream agent's latest per-stream figures, with the table's titles and units.

Mounted by create_app; the route needs a signed-in user and a device the registry knows (404 otherwise), like the
other device reads. A device that never reported streams (a single-stream agent) answers an empty list.
"""

# No `from __future__ import annotations`: FastAPI resolves the route signatures, which use local aliases.
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from fleet.db.streams import DeviceStreams
from shared.streams import STREAM_METRICS

# One device's stored streams (the fleet database's: fleet.db.streams.StreamRepository.get).
StreamSource = Callable[[str], DeviceStreams | None]


class StreamColumn(BaseModel):
    """One per-stream figure as the table declares it."""

    name: str = Field(description="Figure name in telemetry (shared/streams.py).")
    title: str = Field(description="Short title for a column.")
    unit: str = Field(description="Unit ('' for none).")
    kind: str = Field(description="gauge or counter.")
    value_type: str = Field(description="int (whole numbers: counts, flags, versions) or float.")


class StreamRow(BaseModel):
    """One stream and its latest figures."""

    name: str = Field(description="Stream name as the agent's config names it.")
    figures: dict[str, float] = Field(description="Figure name -> value (only those the report carried).")


class StreamsView(BaseModel):
    """A device's streams as of its latest report that carried any."""

    ts_ms: int | None = Field(description="Device-clock time of that report (None: never reported streams).")
    received_ms: int | None = Field(description="When the fleet received it, Unix ms.")
    dropped: int = Field(description="Streams of that report beyond what the fleet keeps per device.")
    columns: list[StreamColumn] = Field(description="The per-stream figures, in the table's order.")
    streams: list[StreamRow] = Field(description="Streams by name.")


COLUMNS = [StreamColumn(name=m.name, title=m.label, unit=m.unit, kind=m.kind, value_type=m.number_type)
           for m in STREAM_METRICS]


def streams_view(found: DeviceStreams | None) -> StreamsView:
    """What the API answers for one device's stored streams."""
    if found is None:
        return StreamsView(ts_ms=None, received_ms=None, dropped=0, columns=COLUMNS, streams=[])
    return StreamsView(ts_ms=found.ts_ms, received_ms=found.received_ms, dropped=found.dropped, columns=COLUMNS,
                       streams=[StreamRow(name=n, figures=f) for n, f in sorted(found.streams.items())])


def stream_routes(source: StreamSource, user: Callable[..., Any], known_device: Callable[[str], str]) -> APIRouter:
    """The route over one source; `user` is the app's sign-in dependency, `known_device` its 404 check."""
    router = APIRouter(tags=["registry"])
    User = Annotated[Any, Depends(user)]

    @router.get("/api/devices/{device_id}/streams", response_model=StreamsView)
    def streams(p: User, device_id: str) -> StreamsView:
        """The device's streams (cameras, sensors) with their latest figures; empty for a single-stream agent."""
        return streams_view(source(known_device(device_id)))

    return router
