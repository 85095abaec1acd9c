"""The two-namespace lab: a private link between `cloud` and `device` only, its loss rule, and the cloud side
(broker, S3, proxies, observer) torn down without a trace, also when the body fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hil import netns as netns_mod
from hil.cloud import ACCESS_KEY, BROKER_PORT, BUCKET, S3_PORT, SECRET_KEY, CloudSide
from hil.netns import list_namespaces, netns_unavailable, sweep_orphans
from hil.pair import PairHarness

pytestmark = pytest.mark.netns

DIAL = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)"


@pytest.fixture(autouse=True)
def _needs_netns() -> None:
    why = netns_unavailable()
    if why is not None and os.geteuid() == 0:
        pytest.fail(f"hil: {why}")
    if why is not None:
        pytest.skip(why)


def _processes(pattern: str) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return [ln for ln in out.splitlines() if pattern in ln and "ps -eo" not in ln]


def test_the_lab_links_cloud_and_device_only_and_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="body failed"), PairHarness() as lab:
        names = lab.namespaces()
        assert set(names) <= list_namespaces()
        inside = lab.run_in(lab.device, ["ip", "-o", "-4", "addr", "show"]).stdout
        assert lab.device_ip in inside and lab.cloud_ip not in inside
        routes = lab.run_in(lab.device, ["ip", "-4", "route", "show"]).stdout
        assert "default" not in routes  # nothing but the cloud end is reachable from the device
        listener = lab.spawn_in(lab.cloud, [sys.executable, "-c",
                                            f"import socket,time; s=socket.create_server(('{lab.cloud_ip}', 7001));"
                                            "time.sleep(30)"])
        ok = lab.run_in(lab.device, ["sh", "-c", f"for i in 1 2 3 4 5 6 7 8 9 10; do {sys.executable} -c "
                                     f"'{DIAL}' {lab.cloud_ip} 7001 && exit 0; sleep 0.3; done; exit 1"],
                        check=False)
        assert ok.returncode == 0
        lab.link_down()
        cut = lab.run_in(lab.device, [sys.executable, "-c", DIAL, lab.cloud_ip, "7001"], check=False)
        assert cut.returncode != 0
        lab.link_up()
        raise RuntimeError("body failed")
    assert not set(names) & list_namespaces()
    assert listener.poll() is not None
    assert not any((netns_mod.STATE_DIR / f"{n}.json").exists() for n in names)


def test_loss_rule_drops_packets_in_the_device_namespace_and_is_removed() -> None:
    with PairHarness() as lab:
        lab.set_loss(30)
        ping = lab.run_in(lab.device, ["sh", "-c", f"for i in $(seq 20); do {sys.executable} -c "
                                       f"'{DIAL}' {lab.cloud_ip} 9 2>/dev/null; done; true"], timeout=200)
        assert ping.returncode == 0
        assert lab.dropped_by_loss() > 0
        lab.clear()
        listing = lab.run_in(lab.device, ["nft", "list", "ruleset"]).stdout
        assert "numgen" not in listing


def test_cloud_side_runs_in_the_cloud_namespace_and_stops_everything(tmp_path: Path) -> None:
    with PairHarness() as lab:
        cloud = CloudSide(lab, tmp_path / "cloud")
        try:
            cloud.start()
            cloud.put("probe/object", b"x" * 1000)
            # The device reaches S3 only through the proxy, which counts what it forwarded.
            before = cloud.s3_proxy.counters().bytes_down if cloud.s3_proxy else 0
            get = (f"import boto3; c = boto3.client('s3', endpoint_url='{cloud.s3_url}', "
                   f"aws_access_key_id='{ACCESS_KEY}', aws_secret_access_key='{SECRET_KEY}', region_name='us-east-1');"
                   f" print(len(c.get_object(Bucket='{BUCKET}', Key='probe/object')['Body'].read()))")
            assert lab.run_in(lab.device, [sys.executable, "-c", get]).stdout.strip() == "1000"
            assert cloud.s3_proxy is not None and cloud.s3_proxy.counters().bytes_down - before >= 1000
            # Broker and S3 listen on the cloud's loopback only: from the device, the proxies are the way in.
            for port in (BROKER_PORT, S3_PORT):
                direct = lab.run_in(lab.device, [sys.executable, "-c", DIAL, lab.cloud_ip, str(port)], check=False)
                assert direct.returncode != 0, port
            host, port = cloud.mqtt_addr
            assert lab.run_in(lab.device, [sys.executable, "-c", DIAL, host, str(port)], check=False).returncode == 0
        finally:
            cloud.close()
        assert not _processes(str(tmp_path / "cloud" / "mosquitto.conf"))
        assert cloud.broker is None and cloud.s3 is None
        assert cloud.mqtt_proxy is not None and not cloud.mqtt_proxy.running


def test_the_sweep_of_a_killed_run_also_ends_what_ran_inside_its_namespaces() -> None:
    lab = PairHarness().create()  # as a harness killed -9 leaves it: namespaces and processes
    sleeper = lab.spawn_in(lab.device, ["sleep", "300"])
    dead = subprocess.Popen(["true"])
    dead.wait(10)
    for name in lab.namespaces():
        record = netns_mod.STATE_DIR / f"{name}.json"
        record.write_text(json.dumps({**json.loads(record.read_text()), "pid": dead.pid}))
    assert set(lab.namespaces()) <= set(sweep_orphans())
    assert sleeper.wait(10) == -9
    assert not set(lab.namespaces()) & list_namespaces()
