"""A sensor model's window recipe and the broker reach every source that uses them, and only those: an MQTT-fed
sensor subscribes and windows by the recipe, a camera beside it is left as it was."""

from __future__ import annotations

import json
from typing import Any

from edge.config import SensorMqttSource as MqttConfig
from edge.config import SyntheticSource as SyntheticConfig
from edge.sources.equip import equip
from edge.sources.factory import open_source
from edge.sources.sensor_mqtt import SensorMqttSource
from tests.edge.sensor.test_source_checks import drain, recipe


class Subscriptions:
    """Records what sources subscribe, like the broker link would."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def subscribe(self, topic_filter: str, handler: Any, *, retained: bool = True) -> None:
        self.handlers[topic_filter] = handler


def test_a_sensor_source_gets_the_recipe_and_the_broker_and_a_camera_beside_it_nothing() -> None:
    sensor = open_source(MqttConfig(topic="imu", window=2, stride=1))
    camera = open_source(SyntheticConfig(width=8, height=8))
    assert isinstance(sensor, SensorMqttSource)
    link = Subscriptions()
    equip([camera, sensor], window=recipe())
    assert link.handlers == {}  # no broker given: nothing subscribed
    equip([camera, sensor], link=link)
    assert list(link.handlers) == ["imu"]
    link.handlers["imu"]("imu", json.dumps([[i, i, i] for i in range(8)]).encode())
    assert [w[:, 0].tolist() for w in drain(sensor)] == [[0, 1, 2, 3], [4, 5, 6, 7]]  # the recipe's 4, not 2
