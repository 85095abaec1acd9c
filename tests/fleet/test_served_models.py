"""A device serving further models beside sync.model (its config's `models:`): the registry keeps each one's name,
version, variant, precision, backend and streams from the state payload, on both back-ends, through a database made
before the column existed, and a row holding something the contract refuses reads as what it can."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from sqlalchemy import inspect, text, update

from fleet.db.schema import devices
from fleet.db.store import FleetStore
from fleet.ingest import Ingest
from fleet.registry import MODEL_FIELDS, apply_state, new_record
from shared.payloads import StatePayload

T0 = 1_700_000_000_000
PEOPLE = {"name": "people", "version": 2, "variant": "people.int8.onnx", "precision": "int8",
          "backend": "openvino", "device": "CPU", "streams": ["cam2", "cam3"]}


def state(ts: int = T0, models: list[dict[str, Any]] | None = None) -> StatePayload:
    return StatePayload(device_id="cam-box", boot_id="b1", seq=0, ts=ts, agent_version="0.1.0",
                        model={"name": "digits", "version": 3, "backend": "onnxruntime", "precision": "int8",
                               "streams": ["cam0", "cam1"]},
                        hardware={}, config_digest="abc", models=models or [])


def _send(ingest: Ingest, doc: StatePayload) -> None:
    ingest.process([("edgeferry/lab/cam-box/state", doc.model_dump_json().encode(), True, T0)])


def test_a_state_with_further_models_keeps_each_with_its_streams() -> None:
    rec = apply_state(new_record("lab", "cam-box"), state(models=[PEOPLE]), T0, False)
    assert (rec.model_name, rec.model_version) == ("digits", 3)
    assert (rec.model_precision, rec.model_streams) == ("int8", ("cam0", "cam1")), "the main model's own"
    assert [m["name"] for m in rec.models] == ["people"]
    kept = rec.models[0]
    assert (kept["version"], kept["precision"], kept["backend"], kept["streams"]) == (2, "int8", "openvino",
                                                                                      ["cam2", "cam3"])
    # An agent that stops serving it says so in its next state: the registry forgets it.
    assert apply_state(rec, state(ts=T0 + 1, models=[]), T0 + 1, False).models == ()


def test_further_models_are_stored_read_back_and_replaced(store: FleetStore) -> None:
    ingest = Ingest(store)
    cars = {"name": "cars", "version": 7, "backend": "onnxruntime", "streams": ["cam1"]}
    _send(ingest, state(models=[PEOPLE, cars]))
    rec = store.device("cam-box")
    assert (rec.model_precision, rec.model_streams) == ("int8", ("cam0", "cam1"))
    assert [(m["name"], m["version"], m["streams"]) for m in rec.models] == [("people", 2, ["cam2", "cam3"]),
                                                                            ("cars", 7, ["cam1"])]
    # What `fleet devices show` prints (the record as JSON) names them too.
    assert json.loads(json.dumps(asdict(rec)))["models"][1]["name"] == "cars"
    _send(ingest, state(ts=T0 + 1000, models=[{**PEOPLE, "version": 3}]))
    assert [(m["name"], m["version"]) for m in store.device("cam-box").models] == [("people", 3)]
    assert [(m["name"], m["version"]) for m in store.list_devices()[0].models] == [("people", 3)]


def test_an_older_database_gains_the_models_column_and_keeps_its_devices(
    store_factory: Callable[..., FleetStore],
) -> None:
    old = store_factory()
    old.devices.update("cam-1", lambda r: replace(r, agent_version="0.1.0"))
    with old.engine.begin() as conn:
        for column in ("models", "model_precision", "model_streams"):
            conn.execute(text(f"ALTER TABLE devices DROP COLUMN {column}"))
    old.close()

    new = store_factory()
    assert "models" in {c["name"] for c in inspect(new.engine).get_columns("devices")}
    old_row = new.device("cam-1")
    assert (old_row.agent_version, old_row.models, old_row.model_precision, old_row.model_streams) == ("0.1.0", (),
                                                                                                      None, ())
    Ingest(new).process([("edgeferry/lab/cam-1/state", state(models=[PEOPLE]).model_dump_json().encode()
                          .replace(b'"cam-box"', b'"cam-1"'), True, T0)])
    assert [m["name"] for m in new.device("cam-1").models] == ["people"]


def test_a_stored_entry_the_contract_refuses_is_left_out_when_read(store: FleetStore) -> None:
    store.devices.update("cam-1", lambda r: replace(r, agent_version="0.1.0"))
    junk = [PEOPLE, {"name": "bad name/with slash"}, "text", {"name": "x", "version": -1}, {"unknown": 1}]
    with store.engine.begin() as conn:
        conn.execute(update(devices).where(devices.c.device_id == "cam-1").values(models=junk))
    assert [m["name"] for m in store.device("cam-1").models] == ["people"]
    with store.engine.begin() as conn:
        conn.execute(update(devices).where(devices.c.device_id == "cam-1").values(models={"not": "a list"}))
    assert store.device("cam-1").models == ()


def test_a_stored_entry_keeps_its_valid_fields_and_streams(store: FleetStore) -> None:
    store.devices.update("cam-1", lambda r: replace(r, agent_version="0.1.0"))
    odd = {**PEOPLE, "name": "cars", "streams": ["cam1", "bad/stream", 7], "backend": 5, "written_by": "v0.0.9",
           "variant": "v" * 400}
    with store.engine.begin() as conn:
        conn.execute(update(devices).where(devices.c.device_id == "cam-1").values(
            models=[odd, PEOPLE], model_streams=["cam0", "bad/stream", 3]))
    rec = store.device("cam-1")
    assert rec.model_streams == ("cam0",), "the main model's streams, read the same way"
    cars, people = rec.models
    # what the row says of cars that a reader can trust is kept; the rest of it reads as not known
    assert cars == {"name": "cars", "version": 2, "variant": "v" * 128, "precision": "int8", "device": "CPU",
                    "streams": ["cam1"]}
    assert set(PEOPLE) == MODEL_FIELDS and people == PEOPLE, "every field the registry keeps reads back"
