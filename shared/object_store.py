"""One interface to object storage; a local directory is the embedded default, S3 the cloud one."""

from __future__ import annotations

import os
import posixpath
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from shared.errors import StoreError, StoreNotFoundError
from shared.store_config import StoreConfig

_KEY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def check_key(key: str) -> str:
    """Return key if it is a relative key without '..', empty or absolute parts."""
    if not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise StoreError(f"invalid object key {key!r}")
    return key


@runtime_checkable
class ObjectStore(Protocol):
    """What both sides need of a store; implementations: LocalStore, S3Store, HttpStore, MemoryStore."""

    uri: str

    def get(self, key: str) -> bytes:
        """Whole object; StoreNotFoundError if absent."""
        ...

    def put(self, key: str, data: bytes) -> None:
        """Write an object so readers see all of it or none of it."""
        ...

    def put_file(self, key: str, path: Path) -> None:
        """Upload a file so readers see all of it or none of it."""
        ...

    def download(self, key: str, dest: Path, size: int | None = None) -> None:
        """Copy an object to dest, resuming a partial dest when the store supports ranges."""
        ...

    def exists(self, key: str) -> bool:
        """Whether the object exists."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Keys under prefix, sorted."""
        ...


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename inside it survives power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, before_replace: Callable[[], None] | None = None) -> None:
    """Write data to path via temp file, fsync, rename, fsync of the directory (before_replace: test hook)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


class LocalStore:
    """A directory laid out like a bucket; writes are atomic renames."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"store {self.root} is not writable: {exc.strerror}") from exc
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"store {self.root} is not writable: permission denied")

    def get(self, key: str) -> bytes:
        """Whole object."""
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise StoreNotFoundError(f"{key} not found in store {self.uri}") from exc
        except OSError as exc:
            raise StoreError(f"cannot read {key} from {self.uri}: {exc.strerror}") from exc

    def put(self, key: str, data: bytes) -> None:
        """Atomic write."""
        self._writable()
        try:
            atomic_write(self._path(key), data)
        except OSError as exc:
            raise StoreError(f"cannot write {key} to {self.uri}: {exc.strerror}") from exc

    def put_file(self, key: str, path: Path) -> None:
        """Atomic copy of a file into the store."""
        self._writable()
        dest = self._path(key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            fsync_dir(dest.parent)
        except OSError as exc:
            raise StoreError(f"cannot write {key} to {self.uri}: {exc.strerror}") from exc

    def download(self, key: str, dest: Path, size: int | None = None) -> None:
        """Copy to dest, appending to a partial dest (resume)."""
        src = self._path(key)
        if not src.is_file():
            raise StoreNotFoundError(f"{key} not found in store {self.uri}")
        have = dest.stat().st_size if dest.exists() else 0
        total = src.stat().st_size
        if have > total:
            dest.unlink()
            have = 0
        with open(src, "rb") as f, open(dest, "ab") as out:
            f.seek(have)
            while chunk := f.read(1 << 20):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())

    def exists(self, key: str) -> bool:
        """Whether the object exists."""
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        """Keys under prefix (temp files excluded)."""
        base = self.root
        if not base.exists():
            return []
        out = []
        for p in base.rglob("*"):
            if p.is_file() and not p.name.startswith("."):
                rel = p.relative_to(base).as_posix()
                if rel.startswith(prefix):
                    out.append(rel)
        return sorted(out)


class MemoryStore:
    """In-process store for unit tests of code that talks to a store."""

    def __init__(self) -> None:
        self.uri = "memory://"
        self.objects: dict[str, bytes] = {}

    def get(self, key: str) -> bytes:
        """Whole object."""
        try:
            return self.objects[check_key(key)]
        except KeyError as exc:
            raise StoreNotFoundError(f"{key} not found in store {self.uri}") from exc

    def put(self, key: str, data: bytes) -> None:
        """Store bytes."""
        self.objects[check_key(key)] = bytes(data)

    def put_file(self, key: str, path: Path) -> None:
        """Store a file's bytes."""
        self.put(key, Path(path).read_bytes())

    def download(self, key: str, dest: Path, size: int | None = None) -> None:
        """Append the missing tail to dest."""
        data = self.get(key)
        have = dest.stat().st_size if dest.exists() else 0
        with open(dest, "ab") as out:
            out.write(data[have:])

    def exists(self, key: str) -> bool:
        """Whether the object exists."""
        return check_key(key) in self.objects

    def list(self, prefix: str) -> list[str]:
        """Keys under prefix."""
        return sorted(k for k in self.objects if k.startswith(prefix))


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
