"""An agent serving several streams stops ONNX Runtime's idle workers spinning, leaving the cores to capture; one
source keeps them spinning for latency; the config can force either."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from edge.backends.factory import backend_chain
from edge.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge.config import AgentConfig, OnnxRuntimeConfig
from edge.hardware import detect_hardware
from tests.edge.tiny_onnx import manifest_for, write_classifier

SPIN = "session.intra_op.allow_spinning"


def spin_entry(options: ort.SessionOptions) -> str | None:
    """The session's allow_spinning entry; None when unset (ORT's default: workers spin)."""
    try:
        return str(options.get_session_config_entry(SPIN))
    except RuntimeError:
        return None


@pytest.mark.parametrize(("spin", "entry"), [(False, "0"), (True, None)])
def test_the_spin_setting_reaches_the_served_session(tmp_path: Path, spin: bool, entry: str | None) -> None:
    manifest = manifest_for(write_classifier(tmp_path / "m.onnx"))
    backend = OnnxRuntimeBackend(OnnxRuntimeConfig(threads=2, spin=spin))
    model = backend.load(tmp_path / "m.onnx", manifest.variants[0], manifest)
    options = model._session.get_session_options()  # type: ignore[attr-defined,union-attr]
    assert spin_entry(options) == entry


def test_spin_is_set_from_the_agent_config() -> None:
    cfg = AgentConfig.model_validate({"backend": {"type": "onnxruntime", "threads": 2, "spin": False}})
    assert isinstance(cfg.backend, OnnxRuntimeConfig) and cfg.backend.spin is False
    assert AgentConfig.model_validate({"backend": {"type": "onnxruntime"}}).backend.spin is None  # type: ignore[union-attr]


@pytest.mark.parametrize(("streams", "max_batch", "entry"), [("one source", 1, None), ("four streams", 4, "0")])
def test_unset_spin_sleeps_only_when_several_streams_are_batched(
    tmp_path: Path, streams: str, max_batch: int, entry: str | None
) -> None:
    manifest = manifest_for(write_classifier(tmp_path / "m.onnx"))
    model = OnnxRuntimeBackend(OnnxRuntimeConfig(threads=2), max_batch=max_batch).load(
        tmp_path / "m.onnx", manifest.variants[0], manifest)
    assert spin_entry(model._session.get_session_options()) == entry, streams  # type: ignore[attr-defined,union-attr]


def test_the_agent_serving_streams_builds_its_onnxruntime_backend_sleeping() -> None:
    cfg = AgentConfig.model_validate({"backend": {"type": "auto", "runtimes": ["onnxruntime"]},
                                      "streams": [{"name": "a", "source": {"type": "synthetic"}},
                                                  {"name": "b", "source": {"type": "synthetic"}}]})
    chain = backend_chain(detect_hardware(), cfg.backend, max_batch=cfg.batching.max_size if cfg.streams else 1)
    assert [b.spin for b in chain.backends if isinstance(b, OnnxRuntimeBackend)] == [False]
