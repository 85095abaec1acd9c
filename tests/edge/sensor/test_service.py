"""The anomaly service of a served model: alerts go out on sensor/alerts with the served threshold (config, else the
variant's calibrated one, else the head's) and the channel names of the recipe; an open alert ends with the stream;
telemetry carries the score quantiles, the threshold, alert counts and refused input."""

from __future__ import annotations

from edge.sensor.config import AlertConfig, SensorConfig
from edge.sensor.service import AnomalyService
from edge.telemetry import EnvelopeFactory
from shared.payloads import Envelope, TelemetryPayload
from shared.sensor_events import AnomalyAlertPayload
from shared.tasks.anomaly import AnomalyScore
from shared.topics import DeviceTopics
from tests.edge.fake_link import FakeLink
from tests.edge.sensor.anomaly_package import THRESHOLD, anomaly_manifest
from tests.shared.manifest_factory import make_manifest

TOPICS = DeviceTopics("lab", "imu-1")
ALERTS = "edgeferry/lab/imu-1/sensor/alerts"


def service(cfg: SensorConfig | None = None) -> tuple[AnomalyService, FakeLink]:
    link = FakeLink()
    return AnomalyService(cfg or SensorConfig(), link, TOPICS, EnvelopeFactory("imu-1"), refused=lambda: 4), link


def score(value: float) -> AnomalyScore:
    return AnomalyScore(value, THRESHOLD, value > THRESHOLD, (1, 0, 2), (value, value / 2, value / 4))


def test_alerts_are_published_with_the_variants_threshold_and_channel_names() -> None:
    svc, link = service()
    manifest = anomaly_manifest(variant_threshold=5.0)
    svc.configure(manifest, manifest.variants[0], "sensor_mqtt:imu")
    for i, v in enumerate([4.0, 4.0, 4.0, 6.0, 6.0, 6.0]):  # over the head's 3.0, under the variant's 5.0 first
        svc.on_window(score(v), i)
    alerts = [AnomalyAlertPayload.model_validate(m.json()) for m in link.on(ALERTS)]
    assert [(a.type, a.window, a.threshold) for a in alerts] == [("new", 5, 5.0)]
    assert [c.channel for c in alerts[0].channels] == ["acc_y", "acc_x", "acc_z"]
    assert alerts[0].model_version == manifest.version and alerts[0].stream == "sensor_mqtt:imu"
    svc.finish()
    ends = [AnomalyAlertPayload.model_validate(m.json()) for m in link.on(ALERTS)][1:]
    assert [(a.type, a.alert_id) for a in ends] == [("end", alerts[0].alert_id)]


def test_the_configs_threshold_overrides_the_models() -> None:
    svc, _ = service(SensorConfig(alerts=AlertConfig(threshold=9.0)))
    manifest = anomaly_manifest(variant_threshold=5.0)
    svc.configure(manifest, manifest.variants[0], "s")
    assert svc.threshold == 9.0


def test_telemetry_carries_the_sensor_figures_and_counts_survive_a_model_change() -> None:
    svc, _ = service()
    manifest = anomaly_manifest()
    svc.configure(manifest, manifest.variants[0], "s")
    for i in range(5):
        svc.on_window(score(10.0), i)
    svc.configure(manifest, manifest.variants[0], "s")  # a new model: its tracker starts afresh
    figures = svc.metrics()
    assert figures["anomaly_threshold"] == THRESHOLD and figures["anomaly_alerts"] == 1
    assert figures["anomaly_alerts_active"] == 0 and figures["sensor_input_refused"] == 4
    assert figures["anomaly_score_p50"] == 10.0
    TelemetryPayload.build(Envelope(device_id="imu-1", boot_id="b", seq=0, ts=0), figures)


def test_windows_before_any_anomaly_model_are_ignored() -> None:
    svc, link = service()
    assert svc.on_window(score(50.0), 0) is None and link.on(ALERTS) == []
    assert "anomaly_threshold" not in svc.metrics()


def test_live_settings_restart_the_rule_and_another_model_ends_an_open_alert() -> None:
    svc, link = service()
    manifest = anomaly_manifest()
    svc.configure(manifest, manifest.variants[0], "s")
    for i in range(3):
        svc.on_window(score(4.0), i)
    assert [m.json()["type"] for m in link.on(ALERTS)] == ["new"]
    svc.reconfigure(SensorConfig(alerts=AlertConfig(threshold=8.0)))
    assert svc.threshold == 8.0 and [m.json()["type"] for m in link.on(ALERTS)] == ["new", "end"]
    for i in range(3, 6):
        svc.on_window(score(9.0), i)
    image = make_manifest(version=9)
    svc.configure(image, image.variants[0], "camera")  # an image classifier now serves
    ends = [m.json() for m in link.on(ALERTS)]
    assert [e["type"] for e in ends] == ["new", "end", "new", "end"] and ends[-1]["model_version"] == manifest.version
    assert svc.threshold is None and "anomaly_threshold" not in svc.metrics()
    assert svc.on_window(score(50.0), 7) is None
