"""The production broker config (deploy/mosquitto) in a real Mosquitto, with accounts made by provision.sh: each
device reaches only its own topics, each role has its own rights, several clients of one role user coexist."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.config import MqttConfig
from edge.ha_discovery import node_id
from edge.link.mqtt import MqttLink
from shared.errors import InvalidNameError
from shared.names import check_ident
from shared.topics import DeviceTopics
from tests.deploy.prod_broker import (
    ACCEPTED_BELOW,
    DEPLOY,
    NOT_AUTHORIZED,
    SENSOR,
    Account,
    ProdBroker,
    provision,
    pw,
    wait_until,
)
from tests.fixtures.ports import wait_port


def test_a_device_publishes_only_under_its_own_fleet_and_id(login: Callable[..., Account]) -> None:
    ops = login("edgeferry-ops").subscribe("edgeferry/#", "homeassistant/#")
    cam = login("lab.cam-1")
    own = DeviceTopics("lab", "cam-1")
    allowed = [own.status, own.state, own.telemetry, own.events, own.reply("ping"),
               "homeassistant/sensor/edgeferry_lab_cam-1/fps/config"]
    refused = [
        DeviceTopics("lab", "cam-2").telemetry,    # another device of its fleet
        DeviceTopics("other", "cam-1").telemetry,  # its own id under another fleet
        own.cmd("deploy"),                         # commanding itself
        f"{own.base}/desired",                     # its own desired state is the control plane's
        "homeassistant/sensor/edgeferry_lab_cam-2/fps/config",  # another device's discovery
        "homeassistant/status",                    # Home Assistant's birth message
        "edgeferry/lab/cam-1",                     # beside its leaves
    ]
    assert {t: cam.publish(t, retain=t.startswith("homeassistant/")) for t in refused} == dict.fromkeys(
        refused, NOT_AUTHORIZED)
    assert [t for t in allowed if cam.publish(t) >= ACCEPTED_BELOW] == []
    ops.wait_topic(allowed[-1])  # one publisher, so the refused ones would have arrived before it
    assert [t for t in ops.topics() if t in refused] == []
    assert [t for t in ops.topics() if t in allowed] == allowed


def test_a_device_reads_only_its_own_commands_desired_state_and_sensor(login: Callable[..., Account]) -> None:
    cam = login("lab.cam-1").subscribe(
        "edgeferry/#", "edgeferry/lab/cam-2/cmd/#", "edgeferry/other/cam-1/cmd/#", "homeassistant/#", "#")
    ops = login("edgeferry-ops")
    mine, theirs, twin = DeviceTopics("lab", "cam-1"), DeviceTopics("lab", "cam-2"), DeviceTopics("other", "cam-1")
    foreign = [theirs.cmd("deploy"), twin.cmd("deploy"), f"{theirs.base}/desired", theirs.telemetry,
               "edgeferry/lab/cam-2/sensor/vibration", "homeassistant/sensor/edgeferry_lab_cam-2/fps/config"]
    own = [mine.cmd("deploy"), f"{mine.base}/desired", SENSOR, "homeassistant/status"]
    for topic in foreign + own:
        assert ops.publish(topic) < ACCEPTED_BELOW, topic
    cam.wait_topic(own[-1])
    # One publisher, so anything foreign would have come before the last; a message matching several of its
    # filters may arrive once per filter (MQTT 5 allows it).
    assert list(dict.fromkeys(cam.topics())) == own


def test_roles_have_their_own_rights(login: Callable[..., Account]) -> None:
    cam = login("lab.cam-1").subscribe("edgeferry/lab/cam-1/cmd/#", "edgeferry/lab/cam-1/desired")
    fleet = [login("edgeferry-fleet", client_id=f"edgeferry-fleet/worker-{i}") for i in (1, 2)]
    for worker in fleet:
        worker.subscribe("$share/ingest/edgeferry/+/+/telemetry")
    dash = login("edgeferry-dashboard").subscribe("edgeferry/#")
    ha = login("homeassistant").subscribe("edgeferry/#", "homeassistant/#")
    own = DeviceTopics("lab", "cam-1")

    # The fleet control plane: commands and retained desired state, nothing in a device's name.
    assert fleet[0].publish(own.cmd("deploy"), b"signed") < ACCEPTED_BELOW
    assert fleet[1].publish(f"{own.base}/desired", b"v3", retain=True) < ACCEPTED_BELOW
    cam.wait_topic(f"{own.base}/desired")
    assert cam.topics() == [own.cmd("deploy"), f"{own.base}/desired"]
    for topic in (own.telemetry, own.status, "homeassistant/sensor/edgeferry_lab_cam-1/fps/config"):
        assert fleet[0].publish(topic) == NOT_AUTHORIZED, topic
    # Dashboard read-only; Home Assistant writes only its own birth message.
    assert dash.publish(own.cmd("ping")) == NOT_AUTHORIZED
    assert dash.publish("homeassistant/status", b"online") == NOT_AUTHORIZED
    assert ha.publish(own.cmd("ping")) == NOT_AUTHORIZED
    assert ha.publish("homeassistant/status", b"online") < ACCEPTED_BELOW

    for i in range(10):
        assert cam.publish(own.events, b"e") < ACCEPTED_BELOW
        assert cam.publish(own.reply("ping"), b"r") < ACCEPTED_BELOW
        assert cam.publish(own.telemetry, str(i).encode()) < ACCEPTED_BELOW

    def shared() -> list[list[bytes]]:
        return [[p for t, p, _ in w.messages if t == own.telemetry] for w in fleet]

    wait_until(lambda: sum(map(len, shared())) >= 10, what="shared telemetry")
    first, second = shared()
    assert sorted(first + second) == sorted(str(i).encode() for i in range(10)) and first and second
    dash.wait_topic(own.telemetry)
    wait_until(lambda: ha.topics().count(own.telemetry) == 10, what="telemetry at Home Assistant")
    assert own.events not in ha.topics() and own.reply("ping") not in ha.topics()  # status/state/telemetry only
    assert own.cmd("deploy") not in ha.topics()
    assert all(not w.disconnects for w in (*fleet, dash, ha, cam))


def test_each_listener_accepts_only_its_own_accounts(prod: ProdBroker, login: Callable[..., Account]) -> None:
    assert not login("lab.cam-1", port=prod.services_port).accepted
    assert not login("edgeferry-ops", port=prod.port).accepted
    assert not login("lab.cam-1", password="wrong").accepted
    assert not login("edgeferry-ops", password="wrong").accepted
    assert login("lab.cam-1").accepted and login("edgeferry-ops").accepted


def test_two_clients_of_one_operator_stay_connected(prod: ProdBroker, login: Callable[..., Account]) -> None:
    own = DeviceTopics("lab", "cam-1")
    # The README's way to watch a device, next to a second operator client of the same user.
    watch = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(prod.services_port), "-V", "mqttv5", "-q", "1",
         "-u", "edgeferry-ops", "-P", pw("edgeferry-ops"), "-i", "edgeferry-ops/watch-1",
         "-t", own.telemetry, "-v", "-C", "2", "-W", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        ops = login("edgeferry-ops", client_id="edgeferry-ops/cmd-1").subscribe(own.telemetry)
        wait_until(lambda: "edgeferry-ops/watch-1" in prod.log() and "edgeferry-ops/cmd-1" in prod.log(),
                   what="both operator clients connected")
        cam = login("lab.cam-1")
        deadline = time.monotonic() + 15
        # mosquitto_sub reports no "subscribed" moment: publish until it has printed two and exited.
        sent = 0
        while watch.poll() is None or len(ops.topics()) < 2:
            assert time.monotonic() < deadline, "operator clients did not both receive telemetry"
            assert cam.publish(own.telemetry, f"t{sent}".encode()) < ACCEPTED_BELOW
            sent += 1
            time.sleep(0.05)
        out, err = watch.communicate(timeout=30)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.communicate()
    assert watch.returncode == 0, err
    assert len(out.splitlines()) == 2 and all(line.startswith(own.telemetry + " t") for line in out.splitlines())
    assert ops.disconnects == [] and len(ops.topics()) == sent


def test_a_device_cannot_take_over_another_devices_session(login: Callable[..., Account]) -> None:
    cam = login("lab.cam-1", client_id="cam-1", persistent=True).subscribe("edgeferry/lab/cam-1/cmd/#")
    cam.close()
    ops = login("edgeferry-ops")
    assert ops.publish("edgeferry/lab/cam-1/cmd/deploy", b"queued while offline") < ACCEPTED_BELOW
    # Other devices' credentials (one the same id in another fleet) claiming cam-1's client id or its username.
    for user, claimed in (("lab.cam-2", "cam-1"), ("other.cam-1", "lab.cam-1")):
        intruder = login(user, client_id=claimed, persistent=True)
        assert intruder.accepted and intruder.session_present is False and intruder.messages == []
        intruder.close()
    back = login("lab.cam-1", client_id="anything", persistent=True)
    assert back.session_present is True
    assert back.wait_topic("edgeferry/lab/cam-1/cmd/deploy") == b"queued while offline"


def test_retained_state_and_a_long_backlog_survive_a_broker_restart(
    prod: ProdBroker, login: Callable[..., Account]
) -> None:
    own = DeviceTopics("lab", "cam-1")
    ingest = login("edgeferry-fleet", client_id="edgeferry-fleet/ingest", persistent=True).subscribe(own.telemetry)
    ingest.close()
    cam = login("lab.cam-1")
    assert cam.publish(own.status, b"online", retain=True) < ACCEPTED_BELOW
    backlog = 1500  # Mosquitto's default queue per offline client is 1,000, beyond which it drops silently
    for i in range(backlog):
        cam.client.publish(own.telemetry, str(i), qos=1)
    assert cam.publish(own.telemetry, b"last") < ACCEPTED_BELOW  # PUBACKs come in order: everything before is queued
    cam.close()
    prod.broker.stop()
    prod.broker.start()
    wait_port(prod.services_port)
    late = login("edgeferry-dashboard").subscribe(own.status)
    assert late.wait_topic(own.status) == b"online"
    back = login("edgeferry-fleet", client_id="edgeferry-fleet/ingest", persistent=True)
    assert back.session_present is True
    back.wait_topic(own.telemetry)
    wait_until(lambda: len(back.messages) == backlog + 1, timeout=30, what="whole backlog")
    assert [p for _, p, _ in back.messages] == [str(i).encode() for i in range(backlog)] + [b"last"]


def test_the_agent_link_works_with_device_credentials(prod: ProdBroker, login: Callable[..., Account],
                                                      tmp_path: Path) -> None:
    ops = login("edgeferry-ops").subscribe("edgeferry/#")
    mine, other = DeviceTopics("lab", "cam-1"), DeviceTopics("lab", "cam-2")
    cfg = MqttConfig(host="127.0.0.1", port=prod.port, username="lab.cam-1", password=pw("lab.cam-1"),
                     outbox_path=tmp_path / "o.sqlite", keepalive_s=5, reconnect_min_s=1, reconnect_max_s=1)
    link = MqttLink(cfg, mine)
    handled: list[bytes] = []
    link.subscribe(mine.cmd_filter, lambda t, p: handled.append(p))
    try:
        link.start()
        assert ops.wait_topic(mine.status) == b"online"
        link.publish_json(other.telemetry, {"seq": 0})  # someone else's topic: refused and counted
        link.publish_json(mine.telemetry, {"seq": 1})
        assert b'"seq":1' in ops.wait_topic(mine.telemetry).replace(b" ", b"")
        assert other.telemetry not in ops.topics()
        wait_until(lambda: link.counters.rejected == 1, what="refused publish counted")
        deadline = time.monotonic() + 10
        while not handled:  # the subscription is live some time after the CONNACK
            assert time.monotonic() < deadline, "device never received its command"
            assert ops.publish(mine.cmd("ping"), b'{"id": "1"}') < ACCEPTED_BELOW
            time.sleep(0.1)
    finally:
        link.stop()
    wait_until(lambda: (mine.status, b"stopped") in [(t, p) for t, p, _ in ops.messages], what="stopped status")


def test_the_agents_home_assistant_discovery_passes_the_acl(prod: ProdBroker, login: Callable[..., Account],
                                                            tmp_path: Path) -> None:
    from edge.ha_discovery import HaDiscovery, discovery_configs, withdrawn_topics

    ha = login("homeassistant").subscribe("homeassistant/#")
    mine = DeviceTopics("lab", "cam-1")
    cfg = MqttConfig(host="127.0.0.1", port=prod.port, username="lab.cam-1", password=pw("lab.cam-1"),
                     outbox_path=tmp_path / "o.sqlite", keepalive_s=5, reconnect_min_s=1, reconnect_max_s=1)
    link = MqttLink(cfg, mine)
    reported = ["fps", "frames"]  # the rest are withdrawn with empty retained messages: also its own topics
    discovery = HaDiscovery(link, mine, "test", reported=reported)
    expected = [t for t, _ in discovery_configs(mine, "test", reported=reported)]
    withdrawn = withdrawn_topics(mine, reported=reported)
    try:
        discovery.start()
        link.start()
        ha.wait_topic(expected[-1])
        wait_until(lambda: set(expected) <= set(ha.topics()), what="every discovery config at Home Assistant")
        # Home Assistant's birth message reaches the device, which announces everything again.
        deadline = time.monotonic() + 10
        while discovery.published < 2:  # the subscription is live some time after the CONNACK
            assert time.monotonic() < deadline, "the device never saw Home Assistant's birth message"
            assert ha.publish("homeassistant/status", b"online") < ACCEPTED_BELOW
            time.sleep(0.2)
        wait_until(lambda: link.counters.published >= 2 * (len(expected) + len(withdrawn)), what="second round")
        assert link.counters.rejected == 0
        assert "Denied" not in prod.log()
    finally:
        link.stop()


@pytest.mark.parametrize("name", ["cam-1", "a", "A_9-x", "a" * 64, "a" * 65, "a/b", "a+", "#", "a.b", "-a", "_a",
                                  "", "a b", "ä"])
def test_provisioning_accepts_exactly_the_ids_the_agent_accepts(tmp_path: Path, name: str) -> None:
    (tmp_path / "edgeferry.acl").write_text((DEPLOY / "edgeferry.acl").read_text())
    try:
        check_ident(name)
        agent_ok = True
    except InvalidNameError:
        agent_ok = False
    before = (tmp_path / "edgeferry.acl").read_bytes()
    for fleet, device in ((name, "cam-1"), ("lab", name)):
        done = provision(tmp_path, "device", fleet, device, password="p")
        assert (done.returncode == 0) == agent_ok, done.stderr
        if not agent_ok:
            assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
            assert (tmp_path / "edgeferry.acl").read_bytes() == before
            assert not (tmp_path / "edgeferry-devices.passwd").exists()


@pytest.mark.parametrize("bad", ["edgeferry/#", "edgeferry/lab/cam-2/sensor", "#", "+/vibration", "a/b#", "a/#/b",
                                 "homeassistant/sensor/x", "$SYS/broker/load", "a b"])
def test_provisioning_refuses_a_sensor_topic_that_reaches_beyond_the_device(tmp_path: Path, bad: str) -> None:
    (tmp_path / "edgeferry.acl").write_text((DEPLOY / "edgeferry.acl").read_text())
    done = provision(tmp_path, "device", "lab", "cam-1", "--sensor-topic", bad, password="p")
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert (tmp_path / "edgeferry.acl").read_text() == (DEPLOY / "edgeferry.acl").read_text()


def test_accounts_change_on_a_running_broker_after_a_reload(prod: ProdBroker, login: Callable[..., Account]) -> None:
    assert not login("lab.cam-9", password="first").accepted
    assert provision(prod.dir, "device", "lab", "cam-9", password="first").returncode == 0
    prod.reload()
    assert login("lab.cam-9", password="first").publish("edgeferry/lab/cam-9/telemetry") < ACCEPTED_BELOW

    again = provision(prod.dir, "device", "lab", "cam-9")  # repeated: replaces its block, new random password
    assert again.returncode == 0, again.stderr
    user, new_password = again.stdout.split()
    assert user == "lab.cam-9" and len(new_password) >= 24
    assert (prod.dir / "edgeferry.acl").read_text().count("\nuser lab.cam-9\n") == 1
    prod.reload()
    assert not login("lab.cam-9", password="first").accepted
    assert login("lab.cam-9", password=new_password).accepted

    assert provision(prod.dir, "remove", "lab", "cam-9").returncode == 0
    prod.reload()
    assert not login("lab.cam-9", password=new_password).accepted
    assert "lab.cam-9" not in (prod.dir / "edgeferry.acl").read_text()
    assert login("lab.cam-1").publish("edgeferry/lab/cam-1/telemetry") < ACCEPTED_BELOW  # the others are untouched


def test_provisioning_writes_password_files_only_the_broker_can_read(tmp_path: Path) -> None:
    import grp
    import stat

    (tmp_path / "edgeferry.acl").write_text((DEPLOY / "edgeferry.acl").read_text())
    for args in (("device", "lab", "cam-1"), ("password", "edgeferry-ops"), ("device", "lab", "cam-2"),
                 ("device", "lab", "cam-1")):  # the second write of a file replaces it: its mode must hold too
        done = provision(tmp_path, *args, password="p")
        assert done.returncode == 0, done.stderr
        for name in ("edgeferry-devices.passwd", "edgeferry-services.passwd"):
            path = tmp_path / name
            if not path.exists():
                continue
            st = path.stat()
            mode = stat.S_IMODE(st.st_mode)
            try:
                broker_gid: int | None = grp.getgrnam("mosquitto").gr_gid
            except KeyError:
                broker_gid = None
            # 0600, or 0640 when the group is the broker's: never readable by other users of the host.
            assert mode == 0o600 or (mode == 0o640 and st.st_gid == broker_gid), f"{name} has mode {mode:o}"
    assert "user lab.cam-2" in (tmp_path / "edgeferry.acl").read_text()


def test_the_web_apps_alerts_reach_operators_through_the_shipped_acl(prod: ProdBroker,
                                                                      login: Callable[..., Account]) -> None:
    from dashboards.web.alerts import Alert, alert_topic
    from dashboards.web.event_buffer import EventBuffer
    from dashboards.web.figures import FigureBuffer
    from dashboards.web.mqtt_feed import MqttFeed

    alert = Alert(rule="package_rejects", device_id="cam-1", kind="metric", message="package_rejects > 0",
                  value=2.0, threshold=0.0, since_ms=1)
    topic = alert_topic("lab", alert)
    ops = login("edgeferry-ops").subscribe("edgeferry/lab/alerts/#")
    dash = login("edgeferry-dashboard").subscribe("edgeferry/lab/alerts/#")
    cam = login("lab.cam-1").subscribe("edgeferry/lab/alerts/#", "edgeferry/#")
    # A device cannot forge (or clear) an alert.
    assert cam.publish(topic, b'{"state":"firing"}', retain=True) == NOT_AUTHORIZED
    assert login("lab.cam-2").publish(topic, b"", retain=True) == NOT_AUTHORIZED
    # The web app publishes with the fleet config's broker user (`fleet serve` passes broker.username).
    feed = MqttFeed("lab", "127.0.0.1", prod.services_port, EventBuffer(), FigureBuffer(),
                    username="edgeferry-fleet", password=pw("edgeferry-fleet"), client_id="edgeferry-fleet/web-1")
    feed.start(wait_s=10)
    try:
        feed.publish_alerts([alert], [])
        fired = json.loads(ops.wait_topic(topic))
        assert fired["state"] == "firing" and fired["device_id"] == "cam-1" and fired["rule"] == "package_rejects"
        assert json.loads(dash.wait_topic(topic))["state"] == "firing"
        late = login("edgeferry-dashboard", client_id="edgeferry-dashboard/late").subscribe("edgeferry/lab/alerts/#")
        assert json.loads(late.wait_topic(topic))["state"] == "firing"  # retained while it fires
        feed.publish_alerts([], [alert])
        wait_until(lambda: [p for t, p, _ in ops.messages if t == topic][-1:] == [b""], what="alert cleared")
        assert [json.loads(p)["state"] for t, p, _ in ops.messages if t == topic and p] == ["firing", "resolved"]
    finally:
        feed.stop()
    assert "Denied PUBLISH from edgeferry-fleet" not in prod.log()
    assert topic not in cam.topics()  # a device does not read the fleet's alerts


def test_devices_whose_ids_hold_underscores_publish_their_own_discovery_and_no_one_elses(
        prod: ProdBroker, login: Callable[..., Account]) -> None:
    # ('a_b', 'c') and ('a', 'b_c') shared the node id edgeferry_a_b_c once: one could overwrite the other's config.
    pair = (DeviceTopics("a_b", "c"), DeviceTopics("a", "b_c"))
    for topics in pair:
        done = provision(prod.dir, "device", topics.fleet, topics.device_id,
                         password=pw(f"{topics.fleet}.{topics.device_id}"))
        assert done.returncode == 0, done.stderr
    prod.reload()
    nodes = [node_id(t) for t in pair]
    assert nodes[0] != nodes[1]
    for mine, theirs in ((0, 1), (1, 0)):
        cam = login(f"{pair[mine].fleet}.{pair[mine].device_id}")
        assert cam.publish(f"homeassistant/sensor/{nodes[mine]}/fps/config", retain=True) < ACCEPTED_BELOW
        assert cam.publish(f"homeassistant/sensor/{nodes[theirs]}/fps/config", retain=True) == NOT_AUTHORIZED
