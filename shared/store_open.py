"""Opening the store a URI names; the one module that knows every back-end, so none of them imports another."""

from __future__ import annotations

import posixpath
from pathlib import Path

from shared.errors import StoreError
from shared.object_store import LocalStore, ObjectStore
from shared.store_config import StoreConfig


def open_store(cfg: StoreConfig) -> ObjectStore:
    """The store a URI names: s3://bucket/prefix, http(s)://base/ (read-only) or a local path."""
    uri = cfg.uri
    if uri.startswith("s3://"):
        from shared.s3_store import S3Store  # boto3 only where S3 is used

        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if not bucket:
            raise StoreError(f"store URI {uri!r} names no bucket; use s3://bucket/prefix")
        return S3Store(bucket, posixpath.normpath(prefix).strip("/") if prefix else "", cfg)
    if uri.startswith(("http://", "https://")):
        from shared.http_store import HttpStore

        return HttpStore(uri, cfg)
    if "://" in uri and not uri.startswith("file://"):
        raise StoreError(f"unsupported store URI {uri!r}; use a path, file://, s3:// or https://")
    return LocalStore(Path(uri.removeprefix("file://")))
