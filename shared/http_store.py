"""Read-only store over plain HTTP(S), for devices that hold no cloud keys (presigned or CDN URLs)."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from shared.errors import StoreError, StoreNotFoundError
from shared.object_store import check_key, copy_capped, oversize_error
from shared.store_config import StoreConfig


class HttpStore:
    """GET <base>/<key>[?query]; downloads resume with a Range header."""

    def __init__(self, base_url: str, cfg: StoreConfig) -> None:
        self.base = base_url.rstrip("/") + "/"
        self.uri = base_url
        self.query = cfg.http_query
        self.timeout = cfg.connect_timeout_s + cfg.read_timeout_s

    def _url(self, key: str) -> str:
        url = self.base + check_key(key)
        return f"{url}?{self.query}" if self.query else url

    def _open(self, key: str, headers: dict[str, str] | None = None) -> tuple[int, bytes | None, object]:
        req = urllib.request.Request(self._url(key), headers=headers or {})
        try:
            resp = urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise StoreNotFoundError(f"{key} not found at {self.uri}") from exc
            if exc.code == 416:
                return 416, None, None
            raise StoreError(f"{self.uri}: GET {key} failed with HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise StoreError(f"{self.uri} unreachable while fetching {key}: {exc}") from exc
        return int(resp.status), None, resp

    def get(self, key: str) -> bytes:
        """Whole object."""
        _, _, resp = self._open(key)
        try:
            return bytes(resp.read())  # type: ignore[attr-defined]
        except OSError as exc:
            raise StoreError(f"{self.uri}: reading {key} failed: {exc}") from exc
        finally:
            resp.close()  # type: ignore[attr-defined]

    def put(self, key: str, data: bytes) -> None:
        """HTTP stores are read-only."""
        raise StoreError(f"{self.uri} is a read-only HTTP store")

    def put_file(self, key: str, path: Path) -> None:
        """HTTP stores are read-only."""
        raise StoreError(f"{self.uri} is a read-only HTTP store")

    def download(self, key: str, dest: Path, size: int | None = None) -> None:
        """Ranged GET from the end of a partial dest; stops as soon as more than size bytes arrive."""
        have = dest.stat().st_size if dest.exists() else 0
        if size is not None and have >= size:
            if have > size:
                dest.unlink()
                have = 0
            else:
                return
        status, _, resp = self._open(key, {"Range": f"bytes={have}-"} if have else None)
        if status == 416:
            return
        try:
            if status != 206:
                have = 0  # a server that ignores Range sends it all
            length = resp.headers.get("Content-Length")  # type: ignore[attr-defined]
            if size is not None and length is not None and length.isdigit() and have + int(length) > size:
                dest.unlink(missing_ok=True)
                raise oversize_error(key, self.uri, size, have + int(length), at_least=False)

            def read(n: int) -> bytes:
                try:
                    return bytes(resp.read(n))  # type: ignore[attr-defined]
                except OSError as exc:
                    raise StoreError(f"{self.uri}: download of {key} interrupted: {exc}") from exc

            copy_capped(read, dest, key, self.uri, size=size, have=have)
        finally:
            resp.close()  # type: ignore[attr-defined]

    def exists(self, key: str) -> bool:
        """Whether GET finds the object."""
        try:
            self.get(key)
            return True
        except StoreNotFoundError:
            return False

    def list(self, prefix: str) -> list[str]:
        """Plain HTTP has no listing."""
        raise StoreError(f"{self.uri} cannot list keys; devices read latest.json instead")
