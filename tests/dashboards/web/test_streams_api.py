"""/api/devices/{id}/streams: a multi-stream device's latest per-stream figures, behind sign-in, 404 for unknown."""

from __future__ import annotations

from fastapi.testclient import TestClient

from dashboards.web.app import create_app
from fleet.db.streams import DeviceStreams
from shared.streams import STREAM_METRICS
from tests.dashboards.web.conftest import VIEWER, web_config
from tests.dashboards.web.fakes import FakeFleet
from tests.dashboards.web.test_api import login

STORED = {"cam-1": DeviceStreams("cam-1", 1000, 2000, {"door": {"processed_fps": 14.5, "connected": 1.0},
                                                       "yard": {"processed_fps": 0.0, "connected": 0.0}})}


def test_a_viewer_reads_a_devices_streams_with_the_tables_columns(fleet: FakeFleet) -> None:
    with TestClient(create_app(web_config(), fleet, fleet, streams=STORED.get)) as client:
        assert client.get("/api/devices/cam-1/streams").status_code == 401
        login(client, VIEWER)
        body = client.get("/api/devices/cam-1/streams").json()
        assert [s["name"] for s in body["streams"]] == ["door", "yard"]
        assert body["streams"][1]["figures"] == {"processed_fps": 0.0, "connected": 0.0}
        assert [c["name"] for c in body["columns"]] == [m.name for m in STREAM_METRICS]
        assert body["received_ms"] == 2000 and body["dropped"] == 0
        # A single-stream device answers no streams; an unknown one a 404 naming it.
        assert client.get("/api/devices/cam-2/streams").json()["streams"] == []
        r = client.get("/api/devices/nope/streams")
        assert r.status_code == 404 and "nope" in r.json()["error"]


def test_the_model_version_column_is_a_whole_number_not_a_rate(fleet: FakeFleet) -> None:
    with TestClient(create_app(web_config(), fleet, fleet, streams=STORED.get)) as client:
        login(client, VIEWER)
        columns = {c["name"]: c for c in client.get("/api/devices/cam-1/streams").json()["columns"]}
        assert columns["model_version"] == {"name": "model_version", "title": "Model version", "unit": "",
                                            "kind": "gauge", "value_type": "int"}
        assert columns["processed_fps"]["value_type"] == "float" and columns["frames"]["value_type"] == "int"
