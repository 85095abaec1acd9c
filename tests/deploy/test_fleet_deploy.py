"""The fleet control plane deployed as documented: the image installs the web app with its pages, the unit passes the
web config, and `fleet serve` started exactly as the unit's ExecStart says, on the example configs and the shipped
broker config, serves a sign-in page where a person added by deploy/scripts/web-user.sh signs in, and publishes
its alerts where an operator sees them. No docker engine or systemd runs here: the image is checked statically and
by building the wheel its `pip install` builds, from exactly what it copies."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.deploy.prod_broker import ACCEPTED_BELOW, Account, ProdBroker, pw
from tests.deploy.test_containers import copy_sources
from tests.deploy.test_systemd_unit import FLEET_UNIT, unit_lines
from tests.fixtures.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "containers" / "Dockerfile.fleet"
EXAMPLES = ROOT / "deploy" / "config"
WEB_USER = ROOT / "deploy" / "scripts" / "web-user.sh"
VENV_BIN = Path(sys.executable).parent
STATIC = ROOT / "dashboards" / "web" / "static"


def exec_form(instruction: str) -> list[str]:
    """The JSON array of a Dockerfile ENTRYPOINT/CMD line."""
    line = next(x for x in DOCKERFILE.read_text().splitlines() if x.startswith(instruction + " "))
    return list(json.loads(line.split(" ", 1)[1]))


def pip_extras() -> set[str]:
    """Extras of the image's `pip install "./[...]"`."""
    found = re.search(r'pip install [^\n]*"\./\[([a-z,]+)\]"', DOCKERFILE.read_text())
    assert found, "Dockerfile.fleet no longer runs pip install \"./[...]\": adapt this test"
    return set(found.group(1).split(","))


def web_user(config: Path, name: str, role: str, *extra: str,
             password: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real script that adds a person to the web config."""
    return subprocess.run(
        ["bash", str(WEB_USER), name, role, "--config", str(config), *extra,
         *(["--password-stdin"] if password is not None else [])],
        input=f"{password}\n" if password is not None else None, capture_output=True, text=True, timeout=60,
        env={**os.environ, "EDGEFERRY_PYTHON": sys.executable},
    )


def test_the_image_installs_the_web_app_and_serves_it_by_default() -> None:
    assert {"fleet", "web"} <= pip_extras()
    assert "dashboards" in copy_sources(DOCKERFILE)
    command = exec_form("ENTRYPOINT") + exec_form("CMD")
    assert command[:3] == ["edgeferry", "fleet", "serve"]
    assert command[command.index("--web-config") + 1] == "/etc/edgeferry/web.yaml"
    assert "EXPOSE 8080" in DOCKERFILE.read_text().splitlines()


def test_the_wheel_the_image_builds_carries_every_page_and_vendored_asset(tmp_path: Path) -> None:
    # The build context holds exactly what the Dockerfile copies; pip builds a wheel from it, as in the image.
    context = tmp_path / "context"
    context.mkdir()
    for source in copy_sources(DOCKERFILE):
        src = ROOT / source
        if src.is_dir():
            shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, context / source)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path / "out"), str(context)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    import zipfile

    (wheel,) = (tmp_path / "out").glob("edgeferry-*.whl")
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("dashboards/web/static/")}
    pages = {f"dashboards/web/static/{p.relative_to(STATIC).as_posix()}" for p in STATIC.rglob("*") if p.is_file()}
    assert "dashboards/web/static/login.html" in pages
    assert sorted(pages - shipped) == []


def test_the_unit_passes_the_web_config() -> None:
    argv = shlex.split(dict(unit_lines(FLEET_UNIT))["ExecStart"])
    assert argv[1:3] == ["fleet", "serve"]
    assert argv[argv.index("--web-config") + 1] == "/etc/edgeferry/web.yaml"
    assert argv[argv.index("--config") + 1] == "/etc/edgeferry/fleet.yaml"


def test_the_example_web_config_ships_no_user_and_web_user_adds_one(tmp_path: Path) -> None:
    config = tmp_path / "web.yaml"
    shutil.copy2(EXAMPLES / "web.yaml", config)
    config.chmod(0o640)
    assert yaml.safe_load(config.read_text())["users"] == []  # no default password anywhere
    added = web_user(config, "alice", "operator")
    assert added.returncode == 0, added.stderr
    name, password = added.stdout.split()
    assert name == "alice" and len(password) >= 20
    again = web_user(config, "bob", "viewer", password="bob's own password")
    assert again.returncode == 0 and again.stdout == "", again.stderr
    users = yaml.safe_load(config.read_text())["users"]
    assert [(u["name"], u["role"]) for u in users] == [("alice", "operator"), ("bob", "viewer")]
    assert password not in config.read_text() and all(u["password_hash"].startswith("scrypt$") for u in users)
    assert "# Loopback only" in config.read_text()  # the example's comments stay
    assert stat.S_IMODE(config.stat().st_mode) == 0o640

    before = config.read_bytes()
    for args in (("carol", "admin"), ("", "viewer"), ("a b", "viewer")):
        refused = web_user(config, *args)
        assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert web_user(tmp_path / "missing.yaml", "dave", "viewer").returncode == 2
    assert config.read_bytes() == before


@pytest.fixture
def installed(tmp_path: Path, prod: ProdBroker) -> Iterator[tuple[Path, int, str]]:
    """/etc/edgeferry as documented (the examples, keys, a web user), adapted only where the site differs: broker
    address, password and no TLS (the shipped listeners without TLS, as in test_mosquitto_conf), a local store, a
    free web port. Yields (etc dir, web port, alice's generated password)."""
    etc = tmp_path / "etc" / "edgeferry"
    (etc / "keys").mkdir(parents=True)
    for key in ("fleet", "edgeferry"):
        done = subprocess.run([str(VENV_BIN / "edgeferry"), "keygen", str(etc / "keys" / key)], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    fleet = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text().replace("/etc/edgeferry/", f"{etc}/"))
    fleet["broker"].update(host="127.0.0.1", port=prod.services_port, password=pw("edgeferry-fleet"))
    del fleet["broker"]["tls_ca"]
    fleet["packages"]["store"]["uri"] = str(tmp_path / "store")
    fleet["lease"] = {"worker_id": "test-1"}
    (etc / "fleet.yaml").write_text(yaml.safe_dump(fleet))
    web_port = free_port()
    (etc / "web.yaml").write_text((EXAMPLES / "web.yaml").read_text().replace("port: 8080", f"port: {web_port}"))
    added = web_user(etc / "web.yaml", "alice", "operator")
    assert added.returncode == 0, added.stderr
    yield etc, web_port, added.stdout.split()[1]


def port_open(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_as_the_unit(etc: Path, workdir: Path) -> subprocess.Popen[str]:
    """The unit's ExecStart, word for word, with /opt/edgeferry/.venv as this venv and /etc/edgeferry as etc."""
    settings = unit_lines(FLEET_UNIT)
    argv = shlex.split(dict(settings)["ExecStart"])
    assert argv[0] == "/opt/edgeferry/.venv/bin/edgeferry"
    argv = [str(VENV_BIN / "edgeferry"), *(a.replace("/etc/edgeferry/", f"{etc}/") for a in argv[1:])]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFERRY_")}
    env.update(v.split("=", 1) for k, v in settings if k == "Environment")
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(argv, cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                            stderr=(workdir / "fleet.log").open("w"), text=True)


def test_fleet_serve_as_the_unit_starts_it_lets_a_provisioned_user_sign_in_and_publishes_alerts(
    installed: tuple[Path, int, str], prod: ProdBroker, login: Callable[..., Account], tmp_path: Path
) -> None:
    etc, web_port, password = installed
    ops = login("edgeferry-ops").subscribe("edgeferry/lab/alerts/#")
    state = tmp_path / "var-lib-edgeferry-fleet"
    proc = start_as_the_unit(etc, state)
    log = state / "fleet.log"
    try:
        deadline = time.monotonic() + 60
        while not port_open(web_port):
            assert proc.poll() is None, "fleet serve exited:\n" + log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the web app did not listen within 60 s:\n" + log.read_text()[-3000:]
            time.sleep(0.1)
        base = f"http://127.0.0.1:{web_port}"
        with httpx.Client(base_url=base, timeout=30) as web:
            page = web.get("/login")
            assert page.status_code == 200 and 'action="/login"' in page.text and 'name="password"' in page.text
            wrong = web.post("/login", data={"username": "alice", "password": "guess"})
            assert wrong.status_code == 303 and "failed" in wrong.headers["location"]
            signed = web.post("/login", data={"username": "alice", "password": password})
            assert signed.status_code == 303 and "failed" not in signed.headers["location"]
            me = web.get("/api/me")
            assert me.status_code == 200 and (me.json()["name"], me.json()["role"]) == ("alice", "operator")
            assert web.get("/").status_code == 200

        # The default rule package_rejects > 0 fires for a device that reports one; the web app publishes it with
        # the fleet's broker user, through the shipped ACL.
        cam = login("lab.cam-1")
        now = int(time.time() * 1000)
        telemetry = {"device_id": "cam-1", "boot_id": "b", "seq": 1, "ts": now, "package_rejects": 1, "fps": 10.0}
        topic = "edgeferry/lab/alerts/package_rejects/cam-1"
        deadline = time.monotonic() + 30
        seq = 1
        while topic not in ops.topics():
            assert time.monotonic() < deadline, "no alert within 30 s:\n" + log.read_text()[-3000:]
            assert proc.poll() is None, log.read_text()[-3000:]
            telemetry["seq"] = seq
            assert cam.publish("edgeferry/lab/cam-1/telemetry", json.dumps(telemetry).encode()) < ACCEPTED_BELOW
            seq += 1
            time.sleep(0.5)
        assert json.loads(ops.wait_topic(topic))["state"] == "firing"
    finally:
        proc.terminate()
        proc.wait(30)
    text = log.read_text()
    assert "nobody can sign in" not in text, text[-3000:]
    assert "Denied PUBLISH from edgeferry-fleet" not in prod.log()
    assert proc.returncode == 0, text[-3000:]
