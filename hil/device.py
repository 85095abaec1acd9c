"""Where the agent under test runs: the lab's `device` namespace, or a host over SSH (hil.ssh_target). Both are
driven through the same few operations, so every scenario runs unchanged on either.

The agent is started through `sh -c 'echo $$ >PID; exec ...'`, so its pid is known on the device and a kill -9
hits the agent itself, not a wrapper.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from hil.errors import HilError
from hil.pair import PairHarness


class DeviceTarget(Protocol):
    """What a scenario needs from the machine the agent runs on."""

    kind: str
    root: bool  # device-side faults (tmpfs, page cache) need it
    workdir: str  # a directory on the device for this run
    python: str  # interpreter with the edge extra installed

    def shell(self, script: str, *, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]: ...
    def spawn(self, script: str) -> subprocess.Popen[Any]: ...
    def write(self, path: str, data: bytes) -> None: ...
    def read(self, path: str) -> bytes: ...
    def mount_tmpfs(self, path: str, size_kib: int) -> None: ...
    def umount(self, path: str) -> None: ...
    def fill(self, path: str) -> int: ...
    def faketime_lib(self) -> str | None: ...
    def close(self) -> None: ...


# Fill a filesystem to its last byte (64 KiB, then 4 KiB, then 1-byte writes until ENOSPC); prints bytes taken.
FILL_SCRIPT = """
import errno, os, sys
taken = 0
with open(os.path.join(sys.argv[1], "filler"), "ab", buffering=0) as f:
    for chunk in (1 << 16, 4096, 1):
        block = bytes(chunk)
        while True:
            try:
                taken += f.write(block) or 0
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
st = os.statvfs(sys.argv[1])
print(taken, st.f_bavail * st.f_frsize)
"""
FAKETIME_LIBS = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                 "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1")


def parse_fill(out: str, path: str) -> int:
    """Bytes the filler took; HilError when the filesystem still had room."""
    taken, free = (int(x) for x in out.split()[:2])
    if free != 0:
        raise HilError(f"{path} still has {free} bytes free after filling")
    return taken


class NetnsDevice:
    """The lab's device namespace on this machine; files are local, commands run through `ip netns exec`."""

    kind = "netns"
    root = True

    def __init__(self, lab: PairHarness, workdir: Path) -> None:
        self.lab = lab
        self.workdir = str(workdir)
        self.python = sys.executable
        workdir.mkdir(parents=True, exist_ok=True)

    def shell(self, script: str, *, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a shell script inside the device namespace."""
        return self.lab.run_in(self.lab.device, ["sh", "-c", script], timeout=timeout, check=check)

    def spawn(self, script: str) -> subprocess.Popen[Any]:
        """Start a shell script inside the device namespace."""
        return self.lab.spawn_in(self.lab.device, ["sh", "-c", script], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def write(self, path: str, data: bytes) -> None:
        """Write a file on the device."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)

    def read(self, path: str) -> bytes:
        """Read a file from the device."""
        return Path(path).read_bytes()

    def mount_tmpfs(self, path: str, size_kib: int) -> None:
        """A tmpfs of size_kib at path, mounted from the host (`ip netns exec` runs in a mount namespace of its own,
        where a mount would not outlive the command)."""
        Path(path).mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", path],
                              capture_output=True, text=True, timeout=20, check=False)
        if done.returncode != 0:
            raise HilError(f"cannot mount a tmpfs at {path}: {done.stderr.strip()}")

    def umount(self, path: str) -> None:
        """Unmount (lazily when busy)."""
        if subprocess.run(["umount", path], capture_output=True, timeout=20, check=False).returncode != 0:
            subprocess.run(["umount", "-l", path], capture_output=True, timeout=20, check=False)

    def fill(self, path: str) -> int:
        """Take every free byte of the filesystem at path."""
        out = subprocess.run([self.python, "-c", FILL_SCRIPT, path], capture_output=True, text=True, timeout=120,
                             check=True).stdout
        return parse_fill(out, path)

    def faketime_lib(self) -> str | None:
        """libfaketime's preload library, when installed."""
        return next((lib for lib in FAKETIME_LIBS if Path(lib).is_file()), None)

    def close(self) -> None:
        """Nothing beyond the lab to remove."""


class AgentHandle:
    """One agent process on a device target."""

    def __init__(self, target: DeviceTarget, name: str, config_path: str, env: dict[str, str]) -> None:
        self.target = target
        self.name = name
        self.pid_path = f"{target.workdir}/{name}.pid"
        self.log_path = f"{target.workdir}/{name}.log"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()))
        script = (f"cd {shlex.quote(target.workdir)} && echo $$ > {shlex.quote(self.pid_path)} && exec env "
                  f"{exports} {shlex.quote(target.python)} -m edgeferry.cli agent --config "
                  f"{shlex.quote(config_path)} >> {shlex.quote(self.log_path)} 2>&1")
        target.shell(f"rm -f {shlex.quote(self.pid_path)}")
        self.started = time.time()
        self.proc = target.spawn(script)
        self.pid = self._read_pid()

    def _read_pid(self) -> int:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            out = self.target.shell(f"cat {shlex.quote(self.pid_path)} 2>/dev/null || true").stdout.strip()
            if out.isdigit():
                return int(out)
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise HilError(f"agent {self.name} did not start on the {self.target.kind} target: {self.log_tail()}")

    def alive(self) -> bool:
        """Whether the agent process still runs."""
        return self.target.shell(f"kill -0 {self.pid} 2>/dev/null", check=False).returncode == 0

    def kill9(self) -> None:
        """SIGKILL, as a crash or a power cut does."""
        self.target.shell(f"kill -9 {self.pid} 2>/dev/null || true")
        self.wait(15)

    def terminate(self, timeout: float = 20) -> int | None:
        """SIGTERM (clean stop), then SIGKILL if it does not exit in time; the exit status where known."""
        self.target.shell(f"kill -TERM {self.pid} 2>/dev/null || true")
        if not self.wait(timeout):
            self.kill9()
        return self.proc.poll()

    def wait(self, timeout: float) -> bool:
        """Until the agent exits; True if it did."""
        # The local process is the agent itself (netns: ip netns exec execs it) or its SSH session, which ends
        # with it; so waiting on it needs no round trip to the device.
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the agent's log."""
        try:
            return self.target.read(self.log_path).decode(errors="replace")[-chars:]
        except (OSError, HilError):
            return "(no log)"
