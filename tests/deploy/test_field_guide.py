"""The README's "Put a device in the field", step by step: its marked shell blocks run word for word on an admin
machine (this host, a scratch directory), a broker host and a device (two network namespaces joined by a veth, as
the HIL SSH target is built, each with private overlays of /etc, /var and /opt), then Mosquitto on the shipped
config and the agent's unit's ExecStart (as its User=, in its WorkingDirectory=, with its Environment=) run there.
The device must log in over TLS (mutual TLS, as the guide sets it up) as its provisioned user and publish its
retained status and state, which an operator receives. systemd cannot run here; the guide's own block checks the
unit with `systemd-analyze verify`.

What the test adds, and only that: DNS (broker.example.net and models.example.net in the device's /etc/hosts), the
install of step 1 (the device's /opt/edgeferry links this checkout and its venv), copying files between machines,
and what systemd would do at start (create StateDirectory/CacheDirectory for User=)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.netns import netns_unavailable
from hil.pair import PairHarness
from tests.deploy.test_systemd_unit import UNIT, unit_lines

pytestmark = pytest.mark.netns
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
STEPS = ("pki", "broker", "device")
MARK = re.compile(r"<!-- field-guide: (\S+) -->\n```bash\n(.*?)\n```\n", re.S)
HOSTS = ("broker.example.net", "models.example.net")


def guide_blocks() -> dict[str, str]:
    """The README's marked blocks by name, in order."""
    text = README.read_text()
    section = text[text.index("## Put a device in the field"):]
    section = section[:section.index("\n## ", 1)]
    return {name: body for name, body in MARK.findall(section)}


def test_the_guide_marks_each_step_it_tests() -> None:
    blocks = guide_blocks()
    assert tuple(blocks) == STEPS
    assert README.read_text().count("<!-- field-guide:") == len(STEPS)  # none outside the section, none unparsed


def operator_ping() -> str:
    """Step 5's `edgeferry cmd ... ping` line, as the README prints it."""
    text = README.read_text()
    found = re.search(r"`(EDGEFERRY_MQTT_PASSWORD=<password> \.venv/bin/edgeferry cmd [^`]*)`", text)
    assert found, "the guide's step 5 no longer shows the operator's ping"
    return " ".join(found.group(1).split())


def machine(root: Path) -> str:
    """Shell lines giving this process private overlays of /etc, /var and /opt whose changes land under root."""
    lines = ["set -euo pipefail"]
    for d in ("etc", "var", "opt"):
        up, work = root / f"{d}.upper", root / f"{d}.work"
        up.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        lines.append(f"mount -t overlay overlay -o lowerdir=/{d},upperdir={up},workdir={work} /{d}")
    return "\n".join(lines) + "\n"


def private_mounts(script: str) -> list[str]:
    """argv running a bash script in a mount namespace of its own (spawned inside a network namespace)."""
    return ["unshare", "--mount", "--propagation", "private", "bash", "-c", script]


def as_the_unit() -> str:
    """What systemd does to start the agent's unit, as shell: its directories, then ExecStart as User=."""
    settings = unit_lines(UNIT)
    one = dict(settings)
    user, group = one["User"], one["Group"]
    env = [v for k, v in settings if k == "Environment"]
    return "\n".join([
        f"install -d -o {user} -g {group} -m {one['StateDirectoryMode']} /var/lib/{one['StateDirectory']}",
        f"install -d -o {user} -g {group} -m {one['CacheDirectoryMode']} /var/cache/{one['CacheDirectory']}",
        f"cd {shlex.quote(one['WorkingDirectory'])}",
        f"exec env HOME={shlex.quote(one['WorkingDirectory'])} {' '.join(shlex.quote(e) for e in env)} "
        f"setpriv --reuid {user} --regid {group} --init-groups -- {one['ExecStart']}",
    ])


def wait_tcp(lab: PairHarness, ns: str, host: str, port: int, proc: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + 20
    while lab.run_in(ns, ["bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}"], check=False).returncode != 0:
        assert proc.poll() is None, f"exited {proc.returncode}: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"nothing on {host}:{port}: {log.read_text()[-3000:]}"
        time.sleep(0.2)


@pytest.fixture
def lab() -> Iterator[PairHarness]:
    why = netns_unavailable()
    if why is not None:
        pytest.skip(why)
    for tool in ("openssl", "mosquitto", "mosquitto_sub", "setpriv", "unshare", "systemd-analyze"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            pytest.fail(f"{tool} is missing: run deploy/scripts/bootstrap-system.sh")
    with PairHarness() as pair:
        yield pair


def test_the_field_guide_brings_a_device_online_over_tls(lab: PairHarness, tmp_path: Path) -> None:
    blocks = guide_blocks()

    # Admin machine: certificates and command keys, in a scratch checkout holding this one's venv.
    admin = tmp_path / "admin"
    admin.mkdir()
    (admin / ".venv").symlink_to(ROOT / ".venv")
    done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + blocks["pki"]], cwd=admin, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    # The trainer's package key (make train-cloud writes it); the guide copies its .pub to the device.
    subprocess.run([str(ROOT / ".venv/bin/edgeferry"), "keygen", str(admin / ".keys/edgeferry")], check=True,
                   capture_output=True, timeout=60)

    # Broker host: a checkout with pki/ copied over; the block, then Mosquitto as Debian's unit starts it.
    broker = tmp_path / "broker"
    (broker / "pki").mkdir(parents=True)
    (broker / "deploy").symlink_to(ROOT / "deploy")
    for name in ("ca.pem", "broker.pem", "broker.key"):
        shutil.copy2(admin / "pki" / name, broker / "pki" / name)
    broker_log = tmp_path / "broker.log"
    script = (machine(tmp_path / "broker-root") + f"cd {broker}\n" + blocks["broker"] + "\n"
              + "stat -c '%a %U:%G %n' /etc/mosquitto/edgeferry-*.passwd >&2\n"
              + "exec /usr/sbin/mosquitto -c /etc/mosquitto/mosquitto.conf\n")
    mosquitto = lab.spawn_in(lab.cloud, private_mounts(script), stdout=broker_log.open("w"),
                             stderr=subprocess.STDOUT, text=True)
    wait_tcp(lab, lab.device, lab.cloud_ip, 8883, mosquitto, broker_log)
    modes = re.findall(r"^(\d+) (\S+) \S+/(edgeferry-\S+\.passwd)$", broker_log.read_text(), re.M)
    assert sorted(modes) == [("640", "root:mosquitto", "edgeferry-devices.passwd"),
                             ("640", "root:mosquitto", "edgeferry-services.passwd")], broker_log.read_text()
    ops_user, ops_password = (broker / "edgeferry-ops.credentials").read_text().split()

    # Device: the files the guide lists copied into provision/, then its block, then the unit's ExecStart.
    transfer = tmp_path / "provision"
    transfer.mkdir()
    for src in ("pki/ca.pem", "pki/lab.cam-1.pem", "pki/lab.cam-1.key", ".keys/operator.pub", ".keys/fleet.pub",
                ".keys/edgeferry.pub"):
        shutil.copy2(admin / src, transfer / Path(src).name)
    shutil.copy2(broker / "lab.cam-1.credentials", transfer / "lab.cam-1.credentials")
    device_log = tmp_path / "device.log"
    script = (machine(tmp_path / "device-root")
              + f"echo '{lab.cloud_ip} {' '.join(HOSTS)}' >> /etc/hosts\n"
              + "mkdir -p /opt/edgeferry\n"
              + f"ln -s {ROOT / '.venv'} /opt/edgeferry/.venv\nln -s {ROOT / 'deploy'} /opt/edgeferry/deploy\n"
              + f"cp -a {transfer} /opt/edgeferry/provision\ncd /opt/edgeferry\n"
              + blocks["device"] + "\n"
              + "echo '--- guide done' >&2\n"
              + as_the_unit() + "\n")
    agent = lab.spawn_in(lab.device, private_mounts(script), stdout=device_log.open("w"),
                         stderr=subprocess.STDOUT, text=True)
    try:
        topic = "edgeferry/lab/cam-1/"
        watch = lab.run_in(lab.cloud, [
            "mosquitto_sub", "-h", lab.cloud_ip, "-p", "8884", "--cafile", str(admin / "pki/ca.pem"), "--insecure",
            "-V", "mqttv5", "-u", ops_user, "-P", ops_password, "-i", "edgeferry-ops/field-guide", "-v",
            "-t", topic + "state", "-t", topic + "status", "-C", "2", "-W", "45",
        ], timeout=60, check=False)
        text = device_log.read_text()
        assert watch.returncode == 0, f"{watch.stderr}\ndevice:\n{text[-4000:]}\nbroker:\n{broker_log.read_text()}"
        got = dict(line.split(" ", 1) for line in watch.stdout.splitlines())
        assert got[topic + "status"] == "online"
        state = json.loads(got[topic + "state"])
        assert state["device_id"] == "cam-1"

        # Step 5's ping, from the admin machine (inside the broker's network, with the same DNS stand-in).
        ping = operator_ping().replace("<password>", shlex.quote(ops_password))
        script = machine(tmp_path / "admin-root") + f"echo '{lab.cloud_ip} {HOSTS[0]}' >> /etc/hosts\ncd {admin}\n"
        reply = lab.run_in(lab.cloud, private_mounts(script + ping), timeout=90, check=False)
        assert reply.returncode == 0, reply.stdout + reply.stderr + device_log.read_text()[-3000:]
        assert json.loads(reply.stdout)["ok"] is True

        # The devices' listener wants the client certificate the guide made mutual TLS require.
        device_user, device_password = (broker / "lab.cam-1.credentials").read_text().split()
        def device_login(*cert: str) -> subprocess.CompletedProcess[str]:
            return lab.run_in(lab.device, [
                "mosquitto_sub", "-h", lab.cloud_ip, "-p", "8883", "--cafile", str(admin / "pki/ca.pem"),
                "--insecure", *cert, "-u", device_user, "-P", device_password, "-t", topic + "cmd/#", "-E",
                "-W", "10"], check=False)

        bare = device_login()
        assert bare.returncode != 0, bare.stdout + bare.stderr
        pki = admin / "pki"
        with_cert = device_login("--cert", str(pki / "lab.cam-1.pem"), "--key", str(pki / "lab.cam-1.key"))
        assert with_cert.returncode == 0, with_cert.stdout + with_cert.stderr
        assert agent.poll() is None, device_log.read_text()[-4000:]
    finally:
        text = device_log.read_text()
        agent.terminate()
        agent.wait(30)
        mosquitto.terminate()
        mosquitto.wait(30)
    guide_output = text[:text.index("--- guide done")]
    assert "edgeferry-agent.service" not in guide_output, guide_output  # systemd-analyze verify: nothing to say
    assert '"logger"' in text or '"level"' in text, text[-2000:]  # the unit's EDGEFERRY_DAEMON__LOG_JSON=true
    assert not (tmp_path / "device-root" / "opt.upper" / "edgeferry" / "provision" / "lab.cam-1.key").exists()
