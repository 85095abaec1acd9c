"""One interface to object storage (the protocol, a local directory and an in-memory store); see store_open."""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from shared.errors import IntegrityError, StoreError, StoreNotFoundError

_KEY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
CHUNK = 1 << 20
# What a published store looks like to a web server serving it, whatever the publisher's umask.
FILE_MODE = 0o644
DIR_MODE = 0o755


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
        """Copy an object to dest, resuming a partial dest; never more than size bytes land in dest."""
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


def oversize_error(key: str, uri: str, size: int, seen: int, *, at_least: bool) -> IntegrityError:
    """The one message for an object larger than its declared size."""
    got = f"at least {seen}" if at_least else str(seen)
    return IntegrityError(
        f"{key} in {uri} has {got} bytes but {size} are declared; download stopped and the partial file deleted"
    )


def copy_capped(
    read: Callable[[int], bytes], dest: Path, key: str, uri: str, *, size: int | None, have: int = 0
) -> int:
    """Stream read(n) into dest after its first `have` bytes; dest never grows past size (then it is deleted)."""
    written = have
    with open(dest, "ab" if have else "wb") as out:
        while True:
            want = CHUNK if size is None else min(CHUNK, size - written + 1)
            chunk = read(want)
            if not chunk:
                break
            if size is not None and written + len(chunk) > size:
                out.close()
                dest.unlink(missing_ok=True)
                raise oversize_error(key, uri, size, written + len(chunk), at_least=True)
            out.write(chunk)
            written += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return written


def atomic_write(
    path: Path, data: bytes, before_replace: Callable[[], None] | None = None, *, mode: int | None = None
) -> None:
    """Write data to path via temp file, fsync, rename, fsync of the directory (before_replace: test hook)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
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
    """A directory laid out like a bucket; writes are atomic renames, files 0644 and directories 0755."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def check_writable(self) -> None:
        """Create the root if missing; StoreError when this process cannot write there (checked before work)."""
        try:
            self._mkdirs(self.root)
        except OSError as exc:
            raise StoreError(f"store {self.root} is not writable: {exc.strerror}") from exc
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"store {self.root} is not writable: permission denied")

    def _mkdirs(self, directory: Path) -> None:
        """Create missing directories with DIR_MODE whatever the umask (mkdir alone would give 0700 under 077)."""
        missing = []
        d = directory
        while not d.exists():
            missing.append(d)
            if d.parent == d:
                break
            d = d.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                continue
            os.chmod(d, DIR_MODE)

    def _open(self, key: str) -> int:
        """A read descriptor of a regular file inside the root: symlinks, FIFOs and devices are refused."""
        path = self._path(key)
        try:
            if path.is_symlink():
                raise StoreError(f"{key} in store {self.uri} is a symlink; a store serves regular files only")
            if not path.resolve().is_relative_to(self.root.resolve()):
                raise StoreError(f"{key} in store {self.uri} resolves outside the store; refusing it")
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError as exc:
            raise StoreNotFoundError(f"{key} not found in store {self.uri}") from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreError(f"{key} in store {self.uri} is a symlink; a store serves regular files only") from exc
            raise StoreError(f"cannot read {key} from {self.uri}: {exc.strerror}") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StoreError(f"{key} in store {self.uri} is not a regular file")
        return fd

    def get(self, key: str) -> bytes:
        """Whole object."""
        with os.fdopen(self._open(key), "rb") as f:
            try:
                return f.read()
            except OSError as exc:
                raise StoreError(f"cannot read {key} from {self.uri}: {exc.strerror}") from exc

    def put(self, key: str, data: bytes) -> None:
        """Atomic write."""
        self.check_writable()
        dest = self._path(key)
        try:
            self._mkdirs(dest.parent)
            atomic_write(dest, data, mode=FILE_MODE)
        except OSError as exc:
            raise StoreError(f"cannot write {key} to {self.uri}: {exc.strerror}") from exc

    def put_file(self, key: str, path: Path) -> None:
        """Atomic copy of a file into the store."""
        self.check_writable()
        dest = self._path(key)
        try:
            self._mkdirs(dest.parent)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                    os.fchmod(out.fileno(), FILE_MODE)
                    while chunk := src.read(CHUNK):
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
        """Copy to dest, appending to a partial dest (resume); an object over size is refused before copying."""
        with os.fdopen(self._open(key), "rb") as f:
            total = os.fstat(f.fileno()).st_size
            if size is not None and total > size:
                dest.unlink(missing_ok=True)
                raise oversize_error(key, self.uri, size, total, at_least=False)
            have = dest.stat().st_size if dest.exists() else 0
            if have > total:
                have = 0
            f.seek(have)

            def read(n: int) -> bytes:
                try:
                    return f.read(n)
                except OSError as exc:
                    raise StoreError(f"cannot read {key} from {self.uri}: {exc.strerror}") from exc

            copy_capped(read, dest, key, self.uri, size=size, have=have)

    def exists(self, key: str) -> bool:
        """Whether a regular file (not a symlink) holds the object."""
        try:
            return stat.S_ISREG(self._path(key).lstat().st_mode)
        except FileNotFoundError:
            return False

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
        """Append the missing tail to dest, in chunks and never past size."""
        data = self.get(key)
        have = dest.stat().st_size if dest.exists() else 0
        if have > len(data):
            have = 0
        pos = have

        def read(n: int) -> bytes:
            nonlocal pos
            chunk = data[pos : pos + n]
            pos += len(chunk)
            return chunk

        copy_capped(read, dest, key, self.uri, size=size, have=have)

    def exists(self, key: str) -> bool:
        """Whether the object exists."""
        return check_key(key) in self.objects

    def list(self, prefix: str) -> list[str]:
        """Keys under prefix."""
        return sorted(k for k in self.objects if k.startswith(prefix))
