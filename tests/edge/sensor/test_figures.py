"""Sensor telemetry: score quantiles with the threshold, windows over it, alerts and windows/s, all declared rows of
the metric table, so a report with them is accepted by the fleet's checks."""

from __future__ import annotations

from edge.sensor.figures import SensorFigures
from shared import score_bins
from shared.payloads import Envelope, TelemetryPayload

ENVELOPE = Envelope(device_id="dev-1", boot_id="b1", seq=1, ts=1_700_000_000_000)


def test_a_report_carries_quantiles_threshold_alerts_and_rate_and_passes_the_metric_table() -> None:
    figures = SensorFigures()
    for i in range(1, 101):
        figures.add(float(i), over=i > 90)
    out = figures.report(10.0, threshold=90.0, active_alerts=1, alerts_fired=2, input_refused=5)
    assert (out["anomaly_score_p50"], out["anomaly_score_p95"], out["anomaly_score_p99"]) == (50.0, 95.0, 99.0)
    assert out["anomaly_threshold"] == 90.0 and out["anomaly_windows_over"] == 10
    assert out["anomaly_alerts"] == 2 and out["anomaly_alerts_active"] == 1
    assert out["sensor_window_rate"] == 10.0 and out["sensor_input_refused"] == 5
    assert TelemetryPayload.build(ENVELOPE, out).figures() == out


def test_the_next_report_starts_afresh_and_omits_quantiles_without_windows() -> None:
    figures = SensorFigures()
    figures.add(3.0, over=False)
    figures.report(1.0, threshold=1.0, active_alerts=0, alerts_fired=0, input_refused=0)
    out = figures.report(1.0, threshold=1.0, active_alerts=0, alerts_fired=0, input_refused=0)
    assert "anomaly_score_p50" not in out and out["sensor_window_rate"] == 0 and out["anomaly_windows_over"] == 0
    assert figures.windows == 1


def test_runaway_or_nan_scores_stay_within_the_declared_range() -> None:
    figures = SensorFigures()
    figures.add(float("nan"), over=True)
    figures.add(1e300, over=True)
    out = figures.report(1.0, threshold=1e300, active_alerts=0, alerts_fired=0, input_refused=0)
    assert out["anomaly_score_p99"] == 1e12 and out["anomaly_threshold"] == 1e12
    TelemetryPayload.build(ENVELOPE, out)


def test_a_classifier_on_sensor_windows_reports_only_the_rate() -> None:
    figures = SensorFigures()
    figures.add(0.9, over=False)
    assert set(figures.report(2.0, None, 0, 0, 0)) == {"sensor_window_rate", "sensor_input_refused"}


def test_a_report_counts_scores_into_threshold_bins_and_the_rate_over_it_per_1000() -> None:
    figures = SensorFigures()
    # Threshold 10: 0.1x, 0.5x, 0.5x, 1.0x (not over, as alerts count), 3x and 50x.
    for score in (1.0, 5.0, 5.0, 10.0, 30.0, 500.0):
        figures.add(score, over=score > 10.0)
    out = figures.report(1.0, threshold=10.0, active_alerts=0, alerts_fired=0, input_refused=0)
    bins = [out[name] for name in score_bins.NAMES]
    assert bins == [1, 0, 2, 0, 1, 0, 0, 1, 1]
    assert out["anomaly_alert_rate"] == 1000 * 2 / 6
    assert TelemetryPayload.build(ENVELOPE, out).figures() == out
    empty = figures.report(1.0, threshold=10.0, active_alerts=0, alerts_fired=0, input_refused=0)
    assert "anomaly_alert_rate" not in empty and score_bins.NAMES[0] not in empty
