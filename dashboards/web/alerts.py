"""Alert rules over the metric table, evaluated on the registry's rows; which alerts fire, start and end. No I/O."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from dashboards.web.config import ClassRule, MetricRule, OfflineRule, ZoneRule
from dashboards.web.objects import Occupant
from dashboards.web.ports import DeviceRow, EventRow
from shared.metrics import BY_NAME
from shared.topics import ROOT

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
Rule = OfflineRule | MetricRule | ClassRule | ZoneRule


@dataclass(frozen=True)
class Alert:
    """One rule firing for one device."""

    rule: str
    device_id: str
    kind: str
    message: str
    value: float | None = None
    threshold: float | None = None
    since_ms: int = 0

    @property
    def key(self) -> tuple[str, str]:
        """Identity across evaluations."""
        return (self.rule, self.device_id)

    def as_json(self) -> dict[str, object]:
        """The page's and the MQTT event's view."""
        return {"rule": self.rule, "device_id": self.device_id, "kind": self.kind, "message": self.message,
                "value": self.value, "threshold": self.threshold, "since_ms": self.since_ms}


def _offline(rule: OfflineRule, devices: Sequence[DeviceRow], now_ms: int) -> Iterable[Alert]:
    for d in devices:
        if d.status in ("offline", "stale") and d.last_seen_ms is not None:
            silent_s = (now_ms - d.last_seen_ms) / 1000
            if silent_s > rule.for_s:
                message = f"{d.status} for {silent_s:.0f} s (limit {rule.for_s:g} s)"
                yield Alert(rule.name, d.device_id, rule.kind, message, round(silent_s, 1), rule.for_s)


def _metric(rule: MetricRule, figures: Mapping[str, Mapping[str, float]]) -> Iterable[Alert]:
    test = _OPS[rule.op]
    unit = BY_NAME[rule.metric].unit
    for device_id, values in figures.items():
        value = values.get(rule.metric)
        if value is not None and test(value, rule.threshold):
            yield Alert(rule.name, device_id, rule.kind,
                        f"{rule.metric} = {value:g}{unit and ' ' + unit} ({rule.op} {rule.threshold:g})",
                        value, rule.threshold)


def _class(rule: ClassRule, events: Sequence[EventRow], now_ms: int) -> Iterable[Alert]:
    best: dict[str, EventRow] = {}
    for e in events:
        if (e.label in rule.labels and e.score is not None and e.score >= rule.min_score
                and now_ms - e.ts_ms <= rule.window_s * 1000):
            seen = best.get(e.device_id)
            if seen is None or (e.score, e.ts_ms) > (seen.score or 0.0, seen.ts_ms):
                best[e.device_id] = e
    for device_id, e in best.items():
        yield Alert(rule.name, device_id, rule.kind, f"saw {e.label} at {e.score:.2f} (>= {rule.min_score:g})",
                    e.score, rule.min_score)


def _zone(rule: ZoneRule, occupants: Sequence[Occupant], devices: Sequence[DeviceRow], now_ms: int
          ) -> Iterable[Alert]:
    """Per online device, the object of a watched label longest in the zone, once it is there beyond for_s (an
    offline device sends no `end`, so its objects are not believed to stay)."""
    online = {d.device_id for d in devices if d.status == "online"}
    longest: dict[str, Occupant] = {}
    for o in occupants:
        if o.zone != rule.zone or (rule.labels and o.label not in rule.labels) or o.device_id not in online:
            continue
        seen = longest.get(o.device_id)
        if seen is None or (o.since_ms, o.object_id) < (seen.since_ms, seen.object_id):
            longest[o.device_id] = o
    for device_id, o in sorted(longest.items()):
        stayed_s = (now_ms - o.since_ms) / 1000
        if stayed_s > rule.for_s:
            yield Alert(rule.name, device_id, rule.kind,
                        f"{o.label} {o.object_id} in zone {rule.zone} for {stayed_s:.0f} s (limit {rule.for_s:g} s)",
                        round(stayed_s, 1), rule.for_s)


def evaluate(
    rules: Sequence[Rule], devices: Sequence[DeviceRow], figures: Mapping[str, Mapping[str, float]],
    events: Sequence[EventRow], now_ms: int, occupants: Sequence[Occupant] = (),
) -> list[Alert]:
    """Every alert that fires now; occupants: objects in a detector's zones (dashboards.web.objects)."""
    out: list[Alert] = []
    for rule in rules:
        if isinstance(rule, OfflineRule):
            out.extend(_offline(rule, devices, now_ms))
        elif isinstance(rule, MetricRule):
            out.extend(_metric(rule, figures))
        elif isinstance(rule, ZoneRule):
            out.extend(_zone(rule, occupants, devices, now_ms))
        else:
            out.extend(_class(rule, events, now_ms))
    return out


class AlertTracker:
    """Remembers what fires, so each alert is announced once when it starts and once when it ends."""

    def __init__(self) -> None:
        self._active: dict[tuple[str, str], Alert] = {}

    def update(self, firing: Sequence[Alert], now_ms: int) -> tuple[list[Alert], list[Alert]]:
        """(started, ended) since the last update; active() afterwards holds what fires now."""
        now = {a.key: a for a in firing}
        started = [Alert(**{**a.__dict__, "since_ms": now_ms}) for k, a in now.items() if k not in self._active]
        ended = [a for k, a in self._active.items() if k not in now]
        kept = {k: Alert(**{**a.__dict__, "since_ms": self._active[k].since_ms}) for k, a in now.items()
                if k in self._active}
        self._active = {**kept, **{a.key: a for a in started}}
        return started, ended

    def active(self) -> list[Alert]:
        """Alerts firing now, oldest first."""
        return sorted(self._active.values(), key=lambda a: (a.since_ms, a.rule, a.device_id))


def alert_topic(fleet: str, alert: Alert) -> str:
    """edgeferry/<fleet>/alerts/<rule>/<device>: retained while firing, cleared (empty retained) when it ends."""
    return f"{ROOT}/{fleet}/alerts/{alert.rule}/{alert.device_id}"


def alert_message(alert: Alert, state: str, ts_ms: int) -> bytes:
    """JSON an MQTT tool reads: the alert plus `state` (firing/resolved) and `ts`."""
    return json.dumps({**alert.as_json(), "state": state, "ts": ts_ms}, separators=(",", ":")).encode()
