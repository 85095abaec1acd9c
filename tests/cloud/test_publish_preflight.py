"""The publish preflight, one function for the trainer, the sensor trainer and `edgeferry package`: a store that
cannot take the package is refused before any work, in the same words whichever job asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.byo.package import PackageRequest, package_model
from cloud.config import PublishConfig, TrainConfig
from cloud.pipeline import preflight
from cloud.publish import preflight_store
from cloud.sensor.pipeline import _preflight as sensor_preflight
from shared.errors import StoreError
from shared.signing import generate_keypair
from shared.store_config import StoreConfig


def _under_a_file(tmp_path: Path) -> Path:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's parent directory should be")
    return blocker / "store"


def test_a_directory_store_is_created_and_a_fresh_model_starts_at_version_one(tmp_path: Path) -> None:
    store = preflight_store(StoreConfig(uri=str(tmp_path / "new" / "store")), "digits")
    assert (tmp_path / "new" / "store").is_dir()
    assert store.list("models/") == []


def test_a_directory_store_that_cannot_be_written_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"is not writable") as caught:
        preflight_store(StoreConfig(uri=str(_under_a_file(tmp_path))), "digits")
    assert "\n" not in str(caught.value)


def test_the_trainer_the_sensor_trainer_and_package_refuse_an_unwritable_store_alike_before_any_work(
    tmp_path: Path,
) -> None:
    uri = str(_under_a_file(tmp_path))
    key = generate_keypair(tmp_path / "keys" / "k.key").private
    publish = PublishConfig(name="m", store=StoreConfig(uri=uri), signing_key=key)
    messages = []
    with pytest.raises(StoreError) as trainer:
        preflight(TrainConfig.model_validate({"publish": publish.model_dump()}))
    messages.append(str(trainer.value))
    with pytest.raises(StoreError) as sensor:
        sensor_preflight(publish)
    messages.append(str(sensor.value))
    with pytest.raises(StoreError) as brought:  # the ONNX file does not even exist: the store is checked first
        package_model(PackageRequest(onnx=tmp_path / "missing.onnx", task="detection", name="m", store=uri,
                                     signing_key=key))
    messages.append(str(brought.value))
    assert len(set(messages)) == 1 and "not writable" in messages[0]
