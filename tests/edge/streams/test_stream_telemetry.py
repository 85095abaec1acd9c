"""Per-stream figures reach telemetry under each stream's name; one bad figure costs only itself."""

from __future__ import annotations

from edge.telemetry import EnvelopeFactory, Telemetry


def test_stream_figures_ride_in_the_report_under_their_stream_names() -> None:
    telemetry = Telemetry(EnvelopeFactory("cam-1"))
    telemetry.set_stream_figures(lambda: {"gate": {"processed_fps": 9.5, "stale": 2.0},
                                          "yard": {"processed_fps": 4.0, "e2e_ms_p99": 31.0}})
    payload = telemetry.build()
    assert payload.streams == {"gate": {"processed_fps": 9.5, "stale": 2.0},
                               "yard": {"processed_fps": 4.0, "e2e_ms_p99": 31.0}}


def test_a_bad_stream_figure_is_left_out_and_counted_not_the_report() -> None:
    telemetry = Telemetry(EnvelopeFactory("cam-1"))
    telemetry.set_stream_figures(lambda: {"gate": {"processed_fps": 9.5, "stale": -1.0, "new_thing": 1.0}})
    values = telemetry.values()
    payload = telemetry.build(values)
    assert payload.streams == {"gate": {"processed_fps": 9.5}}
    assert telemetry.dropped == 1


def test_a_single_stream_agent_sends_no_streams_object() -> None:
    assert Telemetry(EnvelopeFactory("cam-1")).build().streams is None
