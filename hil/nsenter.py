"""Run Python code of the harness inside a network namespace: a thread that joins the namespace with setns(2).

Network namespaces are per thread on Linux, so a worker thread can join `cloud` while the rest of the harness
stays where it is; every socket that thread opens (boto3, paho, the fault proxy) lives in that namespace.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from hil.errors import HilError

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/var/run/netns"
T = TypeVar("T")
_libc = ctypes.CDLL(None, use_errno=True)


def enter_netns(name: str) -> None:
    """Move the calling thread into the named namespace (ip netns add NAME)."""
    try:
        fd = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
    except OSError as exc:
        raise HilError(f"network namespace {name} not found ({exc.strerror})") from exc
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise HilError(f"cannot enter network namespace {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


class NsWorker:
    """One thread inside a namespace that runs calls in order; close() ends it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ns-{name}", initializer=enter_netns,
                                        initargs=(name,))

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 120, **kw: Any) -> T:
        """fn(*args, **kw) inside the namespace; its exception is re-raised here."""
        return self._pool.submit(fn, *args, **kw).result(timeout)

    def close(self) -> None:
        """Finish queued calls and end the thread."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def thread_in_netns(name: str, target: Callable[[], None], thread_name: str) -> threading.Thread:
    """A daemon thread that runs target inside the namespace (not started)."""

    def run() -> None:
        enter_netns(name)
        target()

    return threading.Thread(target=run, name=thread_name, daemon=True)
