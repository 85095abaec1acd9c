"""`models:` and `streams[].model`: an agent never starts with a stream nobody serves, a model that serves nothing,
or the same model twice; one model per task is kept at serve time (edge.task_claims)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from edge.config import AgentConfig
from edge.errors import AgentError
from edge.model_unit import side_sync_config
from edge.served_models import streams_by_model
from edge.task_claims import check_task_claim

CAM = {"type": "synthetic"}
IMU = {"type": "sensor_mqtt", "topic": "sensors/imu", "window": 8}


def site(**over: Any) -> dict[str, Any]:
    """A detector on two cameras and a sensor model on an IMU stream."""
    return {
        "sync": {"model": "people", "channel": "beta", "poll_interval_s": 7, "variant": "int8"},
        "models": [{"name": "imu-anomaly"}],
        "streams": [{"name": "gate", "source": CAM}, {"name": "yard", "source": CAM},
                    {"name": "pump", "source": IMU, "model": "imu-anomaly"}],
        **over,
    }


def test_each_model_serves_the_streams_that_name_it_and_takes_the_rest_of_sync_settings() -> None:
    cfg = AgentConfig.model_validate(site(models=[{"name": "imu-anomaly", "pinned_version": 4}]))
    assert streams_by_model(cfg.sync.model, {s.name: s.model for s in cfg.streams}) == {
        "people": ["gate", "yard"], "imu-anomaly": ["pump"]}
    side = side_sync_config(cfg.sync, cfg.models[0])
    # Its own name and pin; the channel and every other sync setting from sync:; never the fleet's desired state.
    assert (side.model, side.pinned_version, side.channel) == ("imu-anomaly", 4, "beta")
    assert (side.poll_interval_s, side.variant, side.follow, side.shadow_every) == (7, "int8", "latest", None)
    assert side.store == cfg.sync.store and side.trusted_keys == cfg.sync.trusted_keys


@pytest.mark.parametrize(("over", "message"), [
    ({"models": []}, "streams name model(s) imu-anomaly that this device does not sync"),
    ({"models": [{"name": "imu-anomaly"}, {"name": "imu-anomaly"}]}, "'imu-anomaly' is listed twice"),
    ({"models": [{"name": "people"}, {"name": "imu-anomaly"}]}, "'people' is sync.model already"),
    ({"models": [{"name": "imu-anomaly"}, {"name": "spare"}]}, "no stream is served by model(s) spare"),
    ({"streams": [{"name": "pump", "source": IMU, "model": "imu-anomaly"}]}, "no stream is served by model(s) people"),
    ({"streams": [{"name": "gate", "source": CAM, "model": "typo"}, {"name": "pump", "source": IMU,
                                                                    "model": "imu-anomaly"}]},
     "stream 'gate' names model 'typo', which is neither sync.model ('people') nor under `models:`"),
    ({"streams": [], "source": CAM}, "`models:` serves further models on `streams:`"),
    ({"models": [{"name": "imu/anomaly"}]}, "invalid model name"),
])
def test_a_model_or_stream_left_out_is_refused_with_what_to_fix(over: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AgentConfig.model_validate(site(**over))
    assert message in str(caught.value)


def test_a_second_model_of_a_task_is_refused_and_another_task_is_not() -> None:
    check_task_claim("imu-anomaly", "anomaly", {"people": "detection"})
    check_task_claim("people", "detection", {"people": "detection"})  # a new version of the same model
    with pytest.raises(AgentError, match="plates is a detection model and people already serves detection"):
        check_task_claim("plates", "detection", {"people": "detection", "imu-anomaly": "anomaly"})
