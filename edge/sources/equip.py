"""What sources need from the agent beyond their config: the served sensor model's window recipe, and the broker
for a source fed by MQTT readings. One place for the agent's start, a model switch and streams added live."""

from __future__ import annotations

from collections.abc import Iterable

from edge.sources.base import FrameSource
from edge.sources.sensor_mqtt import SensorMqttSource, Subscriber
from shared.window_recipe import WindowRecipe


def equip(sources: Iterable[FrameSource], window: WindowRecipe | None = None, link: Subscriber | None = None) -> None:
    """Window sensor sources by `window` (a sensor model serves), and subscribe MQTT-fed ones on `link`; a None
    leaves that part alone (a camera has neither)."""
    for source in sources:
        set_recipe = getattr(source, "set_recipe", None)
        if window is not None and set_recipe is not None:
            set_recipe(window)
        if link is not None and isinstance(source, SensorMqttSource):
            source.attach(link)
