"""The manifest schema accepts what the trainer writes and refuses what a device must never load."""

from __future__ import annotations

import json

import pytest

from shared.errors import ManifestError
from shared.manifest import (
    Latest,
    latest_key,
    parse_latest,
    parse_manifest,
    utcnow,
    version_prefix,
)
from tests.shared.manifest_factory import SHA, make_manifest, manifest_dict


def test_round_trip_is_byte_stable() -> None:
    m = make_manifest()
    again = parse_manifest(m.to_bytes())
    assert again == m
    assert again.to_bytes() == m.to_bytes()


@pytest.mark.parametrize("bad", ["../model.onnx", "/etc/passwd", "a/b.onnx", ".hidden", "..", "a\\b", ""])
def test_unsafe_variant_file_names_are_refused(bad: str) -> None:
    d = manifest_dict()
    d["variants"][0]["file"] = bad
    with pytest.raises(ManifestError, match=r"variants\.0\.file"):
        parse_manifest(json.dumps(d).encode())


def test_golden_file_name_is_checked_too() -> None:
    d = manifest_dict(golden={"file": "../../x.npz", "sha256": SHA, "bytes": 1, "count": 1})
    with pytest.raises(ManifestError, match="golden"):
        parse_manifest(json.dumps(d).encode())


def test_duplicate_and_reserved_names_are_refused() -> None:
    d = manifest_dict()
    d["golden"]["file"] = "model.fp32.onnx"
    with pytest.raises(ManifestError, match="unique"):
        parse_manifest(json.dumps(d).encode())
    d = manifest_dict()
    d["variants"][0]["file"] = "manifest.json"
    with pytest.raises(ManifestError, match="manifest"):
        parse_manifest(json.dumps(d).encode())


def test_unknown_fields_and_schema_versions_are_refused() -> None:
    with pytest.raises(ManifestError, match=r"(?i)extra"):
        parse_manifest(json.dumps(manifest_dict(surprise=1)).encode())
    with pytest.raises(ManifestError, match="schema_version"):
        parse_manifest(json.dumps(manifest_dict(schema_version=99)).encode())


@pytest.mark.parametrize("blob", [b"", b"{", b"[]", b"\xff\xfe", b"null"])
def test_garbage_gives_a_manifest_error(blob: bytes) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(blob)


def test_oversized_manifest_is_refused_before_parsing() -> None:
    with pytest.raises(ManifestError, match="limit"):
        parse_manifest(b" " * (2 << 20))


def test_bad_hash_and_model_name() -> None:
    d = manifest_dict()
    d["variants"][0]["sha256"] = "XYZ"
    with pytest.raises(ManifestError, match="sha256"):
        parse_manifest(json.dumps(d).encode())
    with pytest.raises(ManifestError, match="name"):
        parse_manifest(json.dumps(manifest_dict(name="a/b")).encode())


def test_preprocess_channels_must_match_mean_std() -> None:
    d = manifest_dict()
    d["preprocess"]["channel_order"] = "rgb"
    with pytest.raises(ManifestError, match="preprocess"):
        parse_manifest(json.dumps(d).encode())


def test_files_lists_variants_and_golden() -> None:
    assert [f[0] for f in make_manifest().files()] == ["model.fp32.onnx", "golden.npz"]


def test_keys_and_latest() -> None:
    assert version_prefix("digits", 7) == "models/digits/7/"
    assert latest_key("digits") == "models/digits/latest.json"
    with pytest.raises(ManifestError):
        version_prefix("digits", 0)
    latest = Latest(name="digits", version=2, manifest_sha256=SHA, published_at=utcnow())
    assert parse_latest(latest.to_bytes()) == latest
