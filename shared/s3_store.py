"""S3-compatible object store through plain boto3 (AWS S3, MinIO, moto, ...)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import StoreError, StoreNotFoundError
from shared.object_store import check_key, copy_capped, oversize_error
from shared.store_config import StoreConfig

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_AUTH = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


class S3Store:
    """Bucket + prefix; boto3 retries with backoff up to max_attempts, then StoreError."""

    def __init__(self, bucket: str, prefix: str, cfg: StoreConfig) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.uri = f"s3://{bucket}/{prefix}".rstrip("/")
        self.endpoint = cfg.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        secret = cfg.secret_access_key.get_secret_value() if cfg.secret_access_key else None
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=cfg.region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            aws_access_key_id=cfg.access_key_id,
            aws_secret_access_key=secret,
            config=Config(
                retries={"max_attempts": cfg.max_attempts, "mode": "standard"},
                connect_timeout=cfg.connect_timeout_s,
                read_timeout=cfg.read_timeout_s,
                signature_version="s3v4",
            ),
        )

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _error(self, exc: Exception, op: str, key: str) -> StoreError:
        where = f"{self.uri}" + (f" at {self.endpoint}" if self.endpoint else "")
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _NOT_FOUND:
                return StoreNotFoundError(f"{key} not found in store {where}")
            if code in _AUTH:
                return StoreError(f"store {where} refused {op} of {key} ({code}): check the S3 credentials")
            if code == "NoSuchBucket":
                return StoreError(f"bucket {self.bucket!r} does not exist at {where}")
            return StoreError(f"store {where}: {op} {key} failed: {code}")
        return StoreError(f"store {where} unreachable during {op} of {key}: {exc}")

    def get(self, key: str) -> bytes:
        """Whole object."""
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            return bytes(body.read())
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "get", key) from exc

    def put(self, key: str, data: bytes) -> None:
        """PUT is atomic on S3: readers see the old or the new object."""
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "put", key) from exc

    def put_file(self, key: str, path: Path) -> None:
        """Upload a file (multipart above the boto3 threshold)."""
        try:
            self._client.upload_file(str(path), self.bucket, self._key(key))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "put", key) from exc
        except Exception as exc:  # boto3's S3UploadFailedError wraps ClientError
            if exc.__class__.__name__ == "S3UploadFailedError":
                raise StoreError(f"store {self.uri}: upload of {key} failed: {exc}") from exc
            raise

    def download(self, key: str, dest: Path, size: int | None = None) -> None:
        """Ranged GET from the end of a partial dest; stops as soon as more than size bytes arrive."""
        have = dest.stat().st_size if dest.exists() else 0
        if size is not None and have > size:
            dest.unlink()
            have = 0
        if size is not None and have == size:
            return
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if have:
            kwargs["Range"] = f"bytes={have}-"
        try:
            resp = self._client.get_object(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return
            raise self._error(exc, "get", key) from exc
        except BotoCoreError as exc:
            raise self._error(exc, "get", key) from exc
        body = resp["Body"]
        try:
            length = resp.get("ContentLength")
            if size is not None and isinstance(length, int) and have + length > size:
                dest.unlink(missing_ok=True)
                raise oversize_error(key, self.uri, size, have + length, at_least=False)

            def read(n: int) -> bytes:
                try:
                    return bytes(body.read(n))
                except (BotoCoreError, OSError) as exc:
                    raise self._error(exc, "get", key) from exc

            copy_capped(read, dest, key, self.uri, size=size, have=have)
        finally:
            body.close()

    def exists(self, key: str) -> bool:
        """Whether the object exists."""
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            err = self._error(exc, "head", key)
            if isinstance(err, StoreNotFoundError):
                return False
            raise err from exc
        except BotoCoreError as exc:
            raise self._error(exc, "head", key) from exc

    def list(self, prefix: str) -> list[str]:
        """Keys under prefix."""
        out: list[str] = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix
            )
            for page in pages:
                out.extend(o["Key"][len(self.prefix) :] for o in page.get("Contents", []))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "list", prefix) from exc
        return sorted(out)
