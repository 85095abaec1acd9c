"""The SSH device target: any host reached as ssh://user@host[:port] with a key. The harness checks the login and
the interpreter first, copies the edgeferry wheel and installs it into a venv there, then drives the agent through
the same operations as the namespace target (hil.device.DeviceTarget).

Inside the lab the SSH client runs in the `cloud` namespace and the device is an OpenSSH server started in the
`device` namespace with its own host key (LabSshd), reached with a key made for the run. There is no internet inside
a namespace, so the venv there gets its dependencies from the harness's own site-packages (a .pth file) instead of
PyPI; a real device would `pip install 'edgeferry[edge]'` from an index or wheels of the dependencies.
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hil.device import FAKETIME_LIBS, FILL_SCRIPT, parse_fill
from hil.errors import HilError
from hil.pair import PairHarness

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
MIN_PYTHON = (3, 10)
SSH_PORT = 2222


@dataclass(frozen=True)
class SshAddress:
    """user@host:port parsed from ssh://user@host[:port]."""

    user: str
    host: str
    port: int

    @classmethod
    def parse(cls, uri: str) -> SshAddress:
        """ssh://user@host[:port]; anything else is one clear error."""
        parts = urlsplit(uri)
        if parts.scheme != "ssh" or not parts.hostname or not parts.username or parts.path not in ("", "/"):
            raise HilError(f"SSH target {uri!r} is not of the form ssh://user@host[:port]")
        if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", parts.username):
            raise HilError(f"SSH target {uri!r}: {parts.username!r} is not a valid login name")
        try:
            port = parts.port or 22
        except ValueError as exc:
            raise HilError(f"SSH target {uri!r}: bad port") from exc
        return cls(parts.username, parts.hostname, port)


def build_wheel(dest: Path) -> Path:
    """`pip wheel --no-deps .` of this checkout into dest; the wheel's path."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("edgeferry-*.whl"):
        old.unlink()
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(dest), str(ROOT)], capture_output=True, text=True, timeout=300, check=False)
    wheels = sorted(dest.glob("edgeferry-*.whl"))
    if done.returncode != 0 or not wheels:
        raise HilError(f"cannot build the edgeferry wheel: {(done.stderr or done.stdout).strip()[-400:]}")
    return wheels[-1]


class SshDevice:
    """A device over SSH (hil.device.DeviceTarget)."""

    kind = "ssh"

    def __init__(self, address: SshAddress, key: Path, *, known_hosts: Path | None = None,
                 client_netns: str | None = None, remote_python: str = "python3",
                 site_packages_from: str | None = None, connect_timeout_s: int = 5,
                 on_close: Callable[[], None] | None = None) -> None:
        if not key.is_file():
            raise HilError(f"SSH key {key} does not exist")
        self.address = address
        self.key = key
        self.client_netns = client_netns
        self.remote_python = remote_python
        self.site_packages_from = site_packages_from
        self._on_close = on_close
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect_timeout_s}", "-o", "LogLevel=ERROR",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=12"]
        # One multiplexed connection for the many short commands a scenario runs (a handshake each otherwise).
        self._control_dir = Path(tempfile.mkdtemp(prefix="edgeferry-hil-ssh-cm-"))
        opts += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self._control_dir}/%C", "-o", "ControlPersist=120"]
        if known_hosts is not None:
            opts += ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}"]
        else:
            opts += ["-o", "StrictHostKeyChecking=accept-new"]
        self._ssh = [*(["ip", "netns", "exec", client_netns] if client_netns else []), "ssh", "-i", str(key),
                     "-p", str(address.port), *opts, f"{address.user}@{address.host}"]
        self.root = False
        self.workdir = ""
        self.python = ""

    # -- preflight and install ------------------------------------------------------------------------------------

    def connect(self) -> SshDevice:
        """Log in, check Python >= 3.10 and root, make a work dir: every failure is one line naming the cause."""
        try:
            return self._connect()
        except BaseException:
            self._end_master()
            raise

    def _end_master(self) -> None:
        subprocess.run([*self._ssh[:-1], "-O", "exit", self._ssh[-1]], capture_output=True, timeout=20, check=False)
        shutil.rmtree(self._control_dir, ignore_errors=True)

    def _connect(self) -> SshDevice:
        where = f"{self.address.user}@{self.address.host}:{self.address.port}"
        try:
            done = subprocess.run([*self._ssh, "true"], capture_output=True, text=True, timeout=30, check=False)
        except subprocess.TimeoutExpired as exc:
            raise HilError(f"SSH target {where} did not answer within 30 s") from exc
        if done.returncode != 0:
            err = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
            if "Permission denied" in err:
                raise HilError(f"SSH target {where} refused the key {self.key}: {err}")
            if "Host key verification failed" in err:
                raise HilError(f"SSH target {where}: host key does not match the known one: {err}")
            raise HilError(f"SSH target {where} is unreachable: {err}")
        probe = ("import sys; print('%d.%d' % sys.version_info[:2])")
        ver = self.shell(f"{shlex.quote(self.remote_python)} -c {shlex.quote(probe)}", check=False)
        found = ver.stdout.strip()
        if ver.returncode != 0 or not re.fullmatch(r"\d+\.\d+", found):
            raise HilError(f"SSH target {where} has no usable {self.remote_python} (needs Python "
                           f"{'.'.join(map(str, MIN_PYTHON))}+): {(ver.stderr or ver.stdout).strip()[-200:]}")
        if tuple(int(x) for x in found.split(".")) < MIN_PYTHON:
            raise HilError(f"SSH target {where} has Python {found}; the agent needs "
                           f"{'.'.join(map(str, MIN_PYTHON))}+ (install python3.10 or newer there)")
        self.root = self.shell("id -u").stdout.strip() == "0"
        self.workdir = self.shell("mktemp -d /tmp/edgeferry-hil-ssh.XXXXXX").stdout.strip()
        log.info("SSH target %s: Python %s, root %s, work dir %s", where, found, self.root, self.workdir)
        return self

    def install(self, wheel: Path) -> None:
        """Copy the wheel, make a venv and install it there (dependencies: see the module docstring)."""
        venv = f"{self.workdir}/venv"
        remote_wheel = f"{self.workdir}/{wheel.name}"
        self.write(remote_wheel, wheel.read_bytes())
        self.shell(f"{shlex.quote(self.remote_python)} -m venv {shlex.quote(venv)}", timeout=180)
        if self.site_packages_from:
            site = self.shell(f"{venv}/bin/python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])'"
                              ).stdout.strip()
            self.write(f"{site}/edgeferry-hil-deps.pth", f"{self.site_packages_from}\n".encode())
        self.shell(f"{venv}/bin/python -m pip install -q --no-deps --no-index {shlex.quote(remote_wheel)}",
                   timeout=300)
        check = self.shell(f"cd / && {venv}/bin/python -c 'import edgeferry, edge, hil, onnxruntime, paho; "
                           f"print(edgeferry.__file__)'", check=False)
        if check.returncode != 0 or not check.stdout.strip().startswith(venv):
            raise HilError(f"the edge extra did not install on the SSH target: {(check.stderr or check.stdout)[-300:]}")
        self.python = f"{venv}/bin/python"

    # -- DeviceTarget -----------------------------------------------------------------------------------------------

    def _raw(self, script: str, data: bytes | None, timeout: float, check: bool) -> subprocess.CompletedProcess[bytes]:
        try:
            done = subprocess.run([*self._ssh, script], input=data, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise HilError(f"`{script[:80]}` on the SSH target did not finish within {timeout:g} s") from exc
        if check and done.returncode != 0:
            raise HilError(f"`{script[:120]}` on the SSH target failed ({done.returncode}): "
                           f"{done.stderr.decode(errors='replace').strip()[-300:]}")
        return done

    def shell(self, script: str, *, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a shell script on the device."""
        done = self._raw(script, None, timeout, check)
        return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(errors="replace"),
                                           done.stderr.decode(errors="replace"))

    def spawn(self, script: str) -> subprocess.Popen[Any]:
        """Start a script on the device; the SSH session lives as long as it does."""
        return subprocess.Popen([*self._ssh, script], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    def write(self, path: str, data: bytes) -> None:
        """Write a file on the device (parent directories made)."""
        parent = shlex.quote(str(Path(path).parent))
        self._raw(f"mkdir -p {parent} && cat > {shlex.quote(path)}", data, 120, True)

    def read(self, path: str) -> bytes:
        """Read a file from the device."""
        return self._raw(f"cat {shlex.quote(path)}", None, 120, True).stdout

    def mount_tmpfs(self, path: str, size_kib: int) -> None:
        """A tmpfs at path on the device (needs root there)."""
        self.shell(f"mkdir -p {shlex.quote(path)} && mount -t tmpfs -o size={size_kib}k tmpfs {shlex.quote(path)}")

    def umount(self, path: str) -> None:
        """Unmount (lazily when busy)."""
        self.shell(f"umount {shlex.quote(path)} || umount -l {shlex.quote(path)}", check=False)

    def fill(self, path: str) -> int:
        """Take every free byte of the filesystem at path."""
        out = self.shell(f"{shlex.quote(self.python)} -c {shlex.quote(FILL_SCRIPT)} {shlex.quote(path)}",
                         timeout=120).stdout
        return parse_fill(out, path)

    def faketime_lib(self) -> str | None:
        """libfaketime's preload library on the device, when installed."""
        found = self.shell(" || ".join(f"(test -f {lib} && echo {lib})" for lib in FAKETIME_LIBS) + " || true")
        return found.stdout.strip() or None

    def close(self) -> None:
        """Remove the work dir on the device (agents were stopped by their scenarios), then run on_close."""
        try:
            if self.workdir:
                self.shell(f"rm -rf {shlex.quote(self.workdir)}", check=False, timeout=60)
                self.workdir = ""
        finally:
            self._end_master()
            if self._on_close is not None:
                self._on_close()


class LabSshd:
    """A real OpenSSH server in the lab's device namespace: its own host key, one authorised key made for the run."""

    def __init__(self, lab: PairHarness, workdir: Path, port: int = SSH_PORT) -> None:
        if shutil.which("sshd") is None and not Path("/usr/sbin/sshd").exists():
            raise HilError("the SSH target needs OpenSSH's server: apt-get install -y openssh-server")
        self.lab = lab
        self.dir = workdir
        self.port = port
        self.client_key = workdir / "client_key"
        self.known_hosts = workdir / "known_hosts"
        self._proc: subprocess.Popen[Any] | None = None

    def start(self) -> LabSshd:
        """Keys, config, `sshd -D` in the device namespace, and a wait until it answers."""
        self.dir.mkdir(parents=True, exist_ok=True)
        host_key = self.dir / "host_ed25519"
        for key in (host_key, self.client_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True,
                           capture_output=True, timeout=30)
        (self.dir / "authorized_keys").write_text((self.dir / "client_key.pub").read_text())
        (self.dir / "authorized_keys").chmod(0o600)
        conf = self.dir / "sshd_config"
        conf.write_text("\n".join([
            f"ListenAddress {self.lab.device_ip}:{self.port}", f"HostKey {host_key}",
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", "UsePAM no", "StrictModes no",
            f"PidFile {self.dir / 'sshd.pid'}", "Subsystem sftp internal-sftp", "LogLevel ERROR",
        ]) + "\n")
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation directory sshd insists on
        pub = (self.dir / "host_ed25519.pub").read_text().split()
        self.known_hosts.write_text(f"[{self.lab.device_ip}]:{self.port} {pub[0]} {pub[1]}\n")
        self._proc = self.lab.spawn_in(self.lab.device, ["/usr/sbin/sshd", "-D", "-e", "-f", str(conf)],
                                       stdout=subprocess.DEVNULL, stderr=open(self.dir / "sshd.log", "w"))  # noqa: SIM115
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = (self.dir / "sshd.log").read_text()[-300:]
                raise HilError(f"sshd exited with {self._proc.returncode}: {tail}")
            probe = self.lab.run_in(self.lab.cloud, ["sh", "-c", f"exec 3<>/dev/tcp/{self.lab.device_ip}/{self.port}"
                                                     " 2>/dev/null && echo up"], check=False)
            if "up" in probe.stdout or self._tcp_open():
                return self
            time.sleep(0.2)
        raise HilError(f"sshd did not listen on {self.lab.device_ip}:{self.port} within 15 s")

    def _tcp_open(self) -> bool:
        code = (f"import socket; socket.create_connection(('{self.lab.device_ip}', {self.port}), timeout=1)")
        return self.lab.run_in(self.lab.cloud, [sys.executable, "-c", code], check=False).returncode == 0

    def address(self, user: str = "root") -> SshAddress:
        """Where the harness logs in."""
        return SshAddress(user, self.lab.device_ip, self.port)

    def stop(self) -> None:
        """Stop sshd (its sessions and the mount namespace they shared go with it)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        self._proc = None


def harness_site_packages() -> str:
    """The harness venv's site-packages, which a venv on this same machine can borrow dependencies from."""
    return sysconfig.get_paths()["purelib"]


def lab_ssh_target(lab: PairHarness, workdir: Path, wheel: Path) -> SshDevice:
    """sshd in the device namespace, an SshDevice logged into it from the cloud namespace, the wheel installed;
    closing the device also stops that sshd."""
    sshd = LabSshd(lab, workdir / "sshd").start()
    try:
        dev = SshDevice(sshd.address(), sshd.client_key, known_hosts=sshd.known_hosts, client_netns=lab.cloud,
                        remote_python=getattr(sys, "_base_executable", sys.executable),  # this machine: harness's base
                        site_packages_from=harness_site_packages(), on_close=sshd.stop).connect()
        dev.install(wheel)
    except BaseException:
        sshd.stop()
        raise
    return dev


def tempdir() -> Path:
    """A fresh local temp dir."""
    return Path(tempfile.mkdtemp(prefix="edgeferry-hil-ssh-"))
