"""The on-disk model cache: atomic installs, the current/previous pointer, pruning and crash recovery."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.errors import InstallError
from edge.fault_injection import crash_point
from shared.errors import EdgeferryError
from shared.manifest import Manifest
from shared.names import check_ident
from shared.object_store import atomic_write, fsync_dir

log = logging.getLogger(__name__)

POINTER_FILE = "current.json"
_VERSION_DIR = re.compile(r"^[1-9][0-9]{0,17}$")


@dataclass(frozen=True)
class InstalledModel:
    """A verified version in the cache."""

    version: int
    dir: Path
    manifest: Manifest


class Pointer(BaseModel):
    """current.json: what to serve, what to roll back to, and the highest version ever activated."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: int = Field(ge=1, description="Version being served.")
    previous: int | None = Field(default=None, ge=1, description="Version served before it, for rollback.")
    highest: int = Field(default=0, ge=0, description="Highest version ever activated (anti-rollback floor).")

    def to_bytes(self) -> bytes:
        """Stable JSON for the pointer file."""
        return json.dumps(self.model_dump(), sort_keys=True).encode() + b"\n"


# Verifies an installed version directory; raises an EdgeferryError (or OSError) when it must not be served.
Verifier = Callable[[int, Path], Manifest]


def _fsync_tree(directory: Path) -> None:
    for entry in directory.iterdir():
        fd = os.open(entry, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fsync_dir(directory)


class ModelCache:
    """<root>/<model>/{staging/, versions/<v>/, current.json}; every state a crash can leave is recoverable."""

    def __init__(self, root: Path, model: str) -> None:
        self.model = check_ident(model, "model name")
        self.model_dir = Path(root) / model
        self.versions_dir = self.model_dir / "versions"
        self.staging_root = self.model_dir / "staging"
        self.pointer_path = self.model_dir / POINTER_FILE

    def prepare_root(self) -> None:
        """Create <root>/<model> if missing and prove it writable; OSError (with strerror) when it cannot be used.

        Run once at start: a cache root that is a file or read-only then stops the agent with one line, instead of a
        warning on every poll.
        """
        root = self.model_dir.parent
        if root.exists() and not root.is_dir():
            raise NotADirectoryError(20, "it is a file, not a directory", str(root))
        self.model_dir.mkdir(parents=True, exist_ok=True)
        probe = self.model_dir / f".write-test-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()

    def version_dir(self, version: int) -> Path:
        """Where an installed version lives."""
        return self.versions_dir / str(version)

    def installed_versions(self) -> list[int]:
        """Version numbers with a directory under versions/, ascending."""
        if not self.versions_dir.is_dir():
            return []
        return sorted(int(p.name) for p in self.versions_dir.iterdir() if _VERSION_DIR.match(p.name) and p.is_dir())

    def new_staging(self, version: int) -> Path:
        """A fresh, empty staging directory for one install attempt of a version."""
        try:
            self.staging_root.mkdir(parents=True, exist_ok=True)
            path = self.staging_root / f"{version}-{secrets.token_hex(4)}"
            path.mkdir()
        except OSError as exc:
            raise InstallError(f"cannot create a staging directory in {self.staging_root}: {exc.strerror}") from exc
        return path

    def discard(self, path: Path) -> None:
        """Delete a staging directory (a failed or superseded attempt)."""
        shutil.rmtree(path, ignore_errors=True)

    def clean_staging(self) -> int:
        """Delete everything under staging/ (leftovers of interrupted installs); return how many entries."""
        if not self.staging_root.is_dir():
            return 0
        entries = list(self.staging_root.iterdir())
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        return len(entries)

    def install(self, staged: Path, version: int) -> Path:
        """Make a verified staging dir durable, then rename it into versions/<v> in one step."""
        dest = self.version_dir(version)
        aside: Path | None = None
        try:
            _fsync_tree(staged)
            crash_point("after-fsync")
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                # A damaged copy of this version: move it out of the way first (rename over a non-empty dir fails).
                aside = self.staging_root / f"{version}-replaced-{secrets.token_hex(4)}"
                os.rename(dest, aside)
            os.rename(staged, dest)
            fsync_dir(self.versions_dir)
            fsync_dir(self.staging_root)
        except OSError as exc:
            raise InstallError(f"cannot install {self.model} v{version} into {dest}: {exc.strerror}") from exc
        crash_point("after-rename")
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
        return dest

    def read_pointer(self) -> Pointer | None:
        """current.json, or None when absent or unreadable (recover() then picks a version)."""
        try:
            data = self.pointer_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read %s: %s", self.pointer_path, exc.strerror)
            return None
        try:
            return Pointer.model_validate_json(data)
        except ValidationError as exc:
            log.warning("ignoring damaged %s: %s", self.pointer_path, exc.errors()[0]["msg"])
            return None

    def write_pointer(self, pointer: Pointer) -> None:
        """Replace current.json atomically (temp, fsync, rename, directory fsync)."""
        try:
            atomic_write(self.pointer_path, pointer.to_bytes(), lambda: crash_point("after-pointer-temp"))
        except OSError as exc:
            raise InstallError(f"cannot write {self.pointer_path}: {exc.strerror}") from exc
        crash_point("after-pointer")

    def remove_version(self, version: int) -> None:
        """Delete an installed version: one rename out of versions/, then the slow delete."""
        src = self.version_dir(version)
        if not src.exists():
            return
        trash = self.staging_root / f"{version}-pruned-{secrets.token_hex(4)}"
        try:
            self.staging_root.mkdir(parents=True, exist_ok=True)
            os.rename(src, trash)
            fsync_dir(self.versions_dir)
        except OSError as exc:
            raise InstallError(f"cannot remove {src}: {exc.strerror}") from exc
        crash_point("during-prune")
        shutil.rmtree(trash, ignore_errors=True)

    def prune(self, keep: int) -> list[int]:
        """Delete all but the newest `keep` versions, never the current or previous one; return those deleted."""
        ptr = self.read_pointer()
        protected = {ptr.version, ptr.previous} if ptr else set()
        newest = sorted(self.installed_versions(), reverse=True)
        doomed = [v for v in newest[keep:] if v not in protected]
        for v in doomed:
            log.info("pruning %s v%d from the cache", self.model, v)
            self.remove_version(v)
        return doomed

    def recover(self, verify: Verifier) -> InstalledModel | None:
        """Clear interrupted work and return the version to serve: current if it verifies, else the best fallback."""
        cleaned = self.clean_staging()
        if cleaned:
            log.info("removed %d leftover staging entries of %s", cleaned, self.model)
        for stray in self.model_dir.glob(f".{POINTER_FILE}.*.tmp"):
            stray.unlink(missing_ok=True)
        ptr = self.read_pointer()
        installed = self.installed_versions()
        # Current first, then previous (both were served before), then the rest newest first.
        order = [v for v in (ptr.version, ptr.previous) if v is not None] if ptr else []
        order += [v for v in reversed(installed) if v not in order]
        for version in order:
            path = self.version_dir(version)
            if not path.is_dir():
                continue
            try:
                manifest = verify(version, path)
            except (EdgeferryError, OSError) as exc:
                log.warning("installed %s v%d fails verification, not serving it: %s", self.model, version, exc)
                continue
            if ptr is None or ptr.version != version:
                log.warning("%s: falling back to installed v%d", self.model, version)
                older = [v for v in installed if v < version and (ptr is None or v != ptr.version)]
                self.write_pointer(
                    Pointer(
                        version=version,
                        previous=older[-1] if older else None,
                        highest=max(ptr.highest if ptr else 0, version),
                    )
                )
            return InstalledModel(version, path, manifest)
        return None
