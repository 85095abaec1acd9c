"""The scenario list: each drives the real agent on the session's target through one fault and returns a Row of
figures and checks. Scenarios that `cross` run once per variant; the others once, with the first variant."""

from __future__ import annotations

import itertools
import logging
import random
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.fault_injection import CRASH_ENV, CRASH_POINTS
from hil.cameras import DeviceCamera, camera_port
from hil.errors import HilError
from hil.plan import FaultPlan
from hil.results import Row
from hil.runner import FaultRunner
from hil.session import Session, histograms
from hil.stream_outage import Phases, judge

log = logging.getLogger(__name__)

FIRST_SERVE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Scenario:
    """A named scenario."""

    name: str
    run: Callable[[Session, str, Row], None]
    cross: bool  # once per variant
    quick: bool  # part of the quick subset `make test` runs
    about: str


def _start_serving(s: Session, row: Row, scenario: str, variant: str, **over: Any) -> tuple[str, Any, Any]:
    """A fresh device serving v1 of a fresh model; returns (run id, publisher, agent)."""
    run_id = s.new_id(scenario)
    pub = s.publisher(f"m-{run_id}")
    pub.publish(1)
    agent = s.start_agent(run_id, s.agent_config(run_id, pub.name, variant, **over))
    if s.wait_serving(run_id, 1, FIRST_SERVE_TIMEOUT_S, agent.started) is None:
        raise HilError(f"agent never served v1 of {pub.name}: {agent.log_tail()}")
    return run_id, pub, agent


def _events(s: Session, run_id: str, t0: float = 0.0) -> list[dict[str, Any]]:
    return [b for m in s.messages(run_id, "events", t0) if (b := m.json())]


def _served_versions_ok(s: Session, row: Row, run_id: str, published: set[int]) -> None:
    """Every result event came from a published, signed version (the agent only serves verified ones)."""
    seen = {int((e.get("after") or {}).get("model_version", -1)) for e in _events(s, run_id)}
    wrong = sorted(seen - published)
    row.check("never_wrong_model", not wrong, f"versions served {sorted(seen)}, published {sorted(published)}")


# -- scenarios ----------------------------------------------------------------------------------------------------


def first_deploy(s: Session, variant: str, row: Row) -> None:
    """Publish to serving: the agent is up with nothing to serve, then v1 is published."""
    run_id = s.new_id("first-deploy")
    pub = s.publisher(f"m-{run_id}")
    agent = s.start_agent(run_id, s.agent_config(run_id, pub.name, variant))
    online = s.cloud.observer.wait_for(lambda m: m.topic == s.topic(run_id, "status") and m.payload == b"online", 30)
    if online is None:
        raise HilError(f"agent never came online: {agent.log_tail()}")
    time.sleep(1.0)  # a few empty polls, as a device waiting for its first model does
    before, rx0 = s.s3_bytes(), s.device_rx()
    t_pub = pub.publish(1)
    served = s.wait_serving(run_id, 1, FIRST_SERVE_TIMEOUT_S, t_pub)
    row.figures["publish_to_serving_s"] = round(served.t - t_pub, 3) if served else None
    time.sleep(0.5)
    row.figures["bytes_from_store"] = s.s3_bytes() - before
    row.figures["device_rx_bytes"] = s.device_rx() - rx0
    row.figures["package_bytes"] = s.base.total_bytes
    row.check("served", served is not None, "first result event from v1")
    _served_versions_ok(s, row, run_id, set(pub.published))
    row.notes.append("publish = latest.json moved; serving = first result event of v1 seen by the fleet side")


def update_degraded(s: Session, variant: str, row: Row) -> None:
    """Update under 300 ms +/- 100 ms delay (proxy, both ways, MQTT and S3) and 10 % packet loss (nftables)."""
    row.link = "delay 300+/-100 ms, loss 10 %"
    run_id, pub, _agent = _start_serving(s, row, "update-degraded", variant)
    assert s.cloud.s3_proxy is not None and s.cloud.mqtt_proxy is not None
    for proxy in (s.cloud.s3_proxy, s.cloud.mqtt_proxy):
        proxy.set_delay(300, 100)
    s.lab.set_loss(10)
    try:
        before, rx0 = s.s3_bytes(), s.device_rx()
        t_pub = pub.publish(2)
        served = s.wait_serving(run_id, 2, 180, t_pub)
        row.figures["publish_to_serving_s"] = round(served.t - t_pub, 3) if served else None
        row.figures["bytes_from_store"] = s.s3_bytes() - before
        row.figures["device_rx_bytes"] = s.device_rx() - rx0
        row.figures["package_bytes"] = s.base.total_bytes
        row.figures["packets_dropped_by_loss"] = s.lab.dropped_by_loss()
    finally:
        s.lab.set_loss(0)
        for proxy in (s.cloud.s3_proxy, s.cloud.mqtt_proxy):
            proxy.set_delay(0, 0)
    row.check("updated", served is not None, "v2 served under delay and loss")
    row.check("loss_applied", int(row.figures["packets_dropped_by_loss"] or 0) > 0, "the loss rule dropped packets")
    _served_versions_ok(s, row, run_id, set(pub.published))
    row.notes.append("bytes_from_store: what the S3 proxy sent (HTTP, polls included); device_rx_bytes: what the "
                     "device's link received at IP level, retransmissions included")


def _cut_mid_download(s: Session, variant: str, row: Row, scenario: str, cut: Callable[[], None],
                      restore: Callable[[], None], outage_s: float) -> None:
    run_id, pub, agent = _start_serving(s, row, scenario, variant)
    pub.upload(2)
    s.lab.rate_limit(4000, burst_bytes=16000, latency_ms=2000)  # ~3 s for the package: room to cut it mid-way
    try:
        before, rx0 = s.s3_bytes(), s.device_rx()
        t_pub = pub.point(2)
        total = s.base.total_bytes
        reached = s.wait_until(lambda: s.s3_bytes() - before > 0.4 * total, 60, 0.02)
        at_cut = s.s3_bytes() - before
        cut()
        time.sleep(outage_s)
        restore()
        s.lab.unlimit()
        served = s.wait_serving(run_id, 2, 120, t_pub)
    finally:
        s.lab.clear()
    wire = s.s3_bytes() - before
    rx = s.device_rx() - rx0
    row.figures["proxy_bytes_at_cut"] = at_cut
    row.figures["bytes_from_store"] = wire
    row.figures["device_rx_bytes"] = rx
    row.figures["package_bytes"] = total
    row.figures["bytes_downloaded_twice"] = max(0, rx - total)
    row.figures["publish_to_serving_s"] = round(served.t - t_pub, 3) if served else None
    log_text = agent.log_tail(20000)
    row.figures["retries_logged"] = log_text.count("retrying in")
    row.check("cut_mid_download", reached and at_cut < total, f"cut after {at_cut} of {total} bytes")
    row.check("resumed", served is not None, "v2 served after the outage")
    _served_versions_ok(s, row, run_id, set(pub.published))
    row.notes.append("bytes_downloaded_twice = bytes the device's link received (IP level) minus the package size: "
                     "an upper bound, it includes TCP/IP and HTTP headers and polls (first_deploy shows that "
                     "overhead on a clean link); bytes_from_store is what the S3 proxy wrote, including data lost "
                     "in socket buffers at the cut")


def link_cut_mid_download(s: Session, variant: str, row: Row) -> None:
    """Link down (and every store connection reset) 40 % into the download, 5 s; then resume."""
    row.link = "4 Mbit/s tbf, cut 5 s"
    assert s.cloud.s3_proxy is not None
    proxy = s.cloud.s3_proxy

    def cut() -> None:
        s.lab.link_down()
        proxy.drop_connections()

    _cut_mid_download(s, variant, row, "link-cut", cut, s.lab.link_up, 5)


def s3_killed_mid_download(s: Session, variant: str, row: Row) -> None:
    """The S3 endpoint is killed -9 40 % into the download and comes back 5 s later (objects restored)."""
    row.link = "4 Mbit/s tbf, S3 down 5 s"
    _cut_mid_download(s, variant, row, "s3-kill", s.cloud.kill_s3, s.cloud.start_s3, 5)


def broker_outage(s: Session, variant: str, row: Row, outage_s: float = 60.0) -> None:
    """Broker killed -9 for 60 s while the agent publishes 20 msg/s (telemetry every 0.1 s, the fastest its config
    allows, plus a result event for each of 10 frames/s); everything must arrive, in order."""
    row.link = f"broker down {outage_s:g} s"
    run_id, _pub, agent = _start_serving(s, row, "broker-outage", variant, mqtt={"telemetry_interval_s": 0.1},
                                        source={"type": "synthetic", "width": 28, "height": 28, "fps": 10,
                                                "pattern": "digits", "policy": "all", "queue_size": 64})
    time.sleep(3)
    t_kill = time.time()
    s.cloud.kill_broker()
    time.sleep(outage_s)
    s.cloud.start_broker()
    t_back = time.time()

    def drained() -> bool:
        tel = s.messages(run_id, "telemetry", t_back)
        return any(not (b := m.json() or {}).get("replayed") and b.get("outbox_depth", 1) == 0 for m in tel[-20:])

    caught_up = s.wait_until(drained, 120, 0.2)
    time.sleep(1)
    agent.terminate(20)
    tel = _delivery(s, row, run_id, agent)
    replayed = [t for t, b in tel if b.get("replayed")]
    row.figures["replayed"] = len(replayed)
    row.figures["catch_up_s"] = round(max(replayed) - t_back, 3) if replayed else 0.0
    produced = sorted(b["ts"] / 1000 for _, b in tel)
    row.figures["messages_per_s"] = round(
        (len(produced) - 1) / max(1e-9, produced[-1] - produced[0]) if len(produced) > 1 else 0, 2)
    firsts: dict[int, float] = {}
    for t, b in tel:
        firsts.setdefault(int(b["seq"]), t)
    row.series["delivered"] = [[round(t - t_kill, 3), i + 1] for i, t in enumerate(sorted(firsts.values()))]
    row.series["produced"] = [[round(b["ts"] / 1000 - t_kill, 3), i + 1]
                              for i, (_, b) in enumerate(sorted(tel, key=lambda tb: tb[1]["seq"]))]
    row.series["outage"] = [[0.0, 0.0], [round(t_back - t_kill, 3), 0.0]]
    row.check("caught_up", caught_up, "a live telemetry message with an empty outbox arrived after the restart")
    row.notes.append("sent = highest seq + 1 + messages the agent reported left in its outbox at exit; seq "
                     "numbers every payload of a boot (telemetry and state), so a gap is a lost message")


def _delivery(s: Session, row: Row, run_id: str, agent: Any) -> list[tuple[float, dict[str, Any]]]:
    """Sent / delivered / lost / duplicated / out of order of one agent run (stopped), from the seq numbers the
    fleet side saw; returns every payload (arrival time, body) in arrival order."""
    lines = [ln for ln in agent.log_tail(20000).splitlines() if "messages left in the outbox" in ln]
    left = int(lines[-1].split(";")[-1].split()[0]) if lines else 0
    bodies = [(m.t, m.json() or {}) for m in s.cloud.observer.since(agent.started)
              if m.topic.startswith(f"edgeferry/hil/{run_id}/")]
    bodies = [(t, b) for t, b in bodies if isinstance(b, dict) and "seq" in b]
    boots = {b["boot_id"] for _, b in bodies}
    firsts: list[int] = []
    seen: set[int] = set()
    dup = 0
    for _, b in bodies:
        q = int(b["seq"])
        if q in seen:
            dup += 1
        else:
            seen.add(q)
            firsts.append(q)
    sent = (max(seen) + 1 + left) if seen else 0
    lost = sent - len(seen)
    out_of_order = sum(1 for a, b in itertools.pairwise(firsts) if b < a)
    row.figures.update({"sent": sent, "delivered": len(seen), "lost": lost, "duplicated": dup,
                        "out_of_order": out_of_order, "left_in_outbox": left})
    row.check("one_boot", len(boots) == 1, f"{len(boots)} boot ids")
    row.check("zero_telemetry_lost", lost == 0 and out_of_order == 0,
              f"sent {sent}, delivered {len(seen)}, lost {lost}, out of order {out_of_order}, duplicated {dup}")
    row.notes.append("sent = highest seq + 1 + messages the agent reported left in its outbox at exit; seq "
                     "numbers every payload of a boot (telemetry and state), so a gap is a lost message")
    return bodies


def plan_scenario(plan: FaultPlan) -> Scenario:
    """A user's fault plan (link faults on the lab link, delay/resets/stall on the MQTT proxy) against the agent's
    telemetry at 10 msg/s: nothing may be lost."""

    def run(s: Session, variant: str, row: Row) -> None:
        row.link = f"plan {plan.name}"
        run_id, _pub, agent = _start_serving(s, row, "plan", variant, events={"mode": "off"},
                                             mqtt={"telemetry_interval_s": 0.1})
        time.sleep(2)
        with FaultRunner(plan, link=s.lab, proxy=s.cloud.mqtt_proxy) as runner:
            applied = runner.wait()
        row.figures["faults_applied"] = len(applied)
        topic = s.topic(run_id, "telemetry")
        t_end = time.time()
        s.cloud.observer.wait_for(
            lambda m: m.topic == topic and m.t > t_end and (m.json() or {}).get("outbox_depth", 1) == 0, 120)
        agent.terminate(20)
        _delivery(s, row, run_id, agent)

    return Scenario(f"plan:{plan.name}", run, False, False, f"fault plan {plan.name}")


def kill9_during_install(s: Session, variant: str, row: Row, rounds: int = 20) -> None:
    """20 rounds: a new version is published, the agent is killed -9 at a random install step (EDGEFERRY_CRASH_AT)
    followed by a power cut's page-cache drop, restarted, and must serve a verified model."""
    rng = random.Random(s.seed)
    run_id, pub, agent = _start_serving(s, row, "kill9", variant, sync={"keep_versions": 2})
    cfg = s.agent_config(run_id, pub.name, variant, sync={"keep_versions": 2})
    agent.terminate(20)
    ok, crashed, dropped_cache, last_served = 0, 0, 0, 1
    points: list[str] = []
    failures: list[str] = []
    can_drop = s.target.root
    for i in range(rounds):
        version = i + 2
        point = rng.choice(CRASH_POINTS)
        points.append(point)
        pub.publish(version)
        victim = s.start_agent(run_id, cfg, {CRASH_ENV: point}, name=f"crash{i}")
        if victim.wait(30):
            crashed += 1
        else:
            victim.kill9()  # the point was not reached (nothing to prune yet): a kill -9 all the same
        if can_drop:
            done = s.target.shell("sync; echo 3 > /proc/sys/vm/drop_caches", check=False)
            if done.returncode == 0:
                dropped_cache += 1
            else:
                can_drop = False
                row.notes.append(f"drop_caches not permitted on this target: {done.stderr.strip()[:120]}")
        t_restart = time.time()
        after = s.start_agent(run_id, cfg, name=f"after{i}")
        ev = s.wait_event(run_id, FIRST_SERVE_TIMEOUT_S, t_restart)
        served = int((ev.json() or {}).get("after", {}).get("model_version", -1)) if ev else None
        # Verified restart: it serves a published (signed, hash-checked on start) version, never older than the
        # one it served before the crash (a rollback nobody asked for would be a wrong model).
        if served is not None and served in pub.published and served >= last_served:
            ok += 1
        else:
            failures.append(f"round {i} ({point}): served {served} after serving {last_served}; "
                            f"{after.log_tail(400)}")
        # Let it finish the interrupted install, so every round starts from "serving N-1, installing N".
        finished = s.wait_serving(run_id, version, 30, t_restart)
        last_served = version if finished is not None else (served or last_served)
        after.terminate(20)
    row.figures.update({"rounds": rounds, "verified_restarts": ok, "crashed_at_point": crashed,
                        "page_cache_dropped": dropped_cache, "points": ",".join(sorted(set(points)))})
    row.check("verified_restarts", ok == rounds, f"{ok}/{rounds}" + (f"; {failures[0]}" if failures else ""))
    _served_versions_ok(s, row, run_id, set(pub.published))
    row.notes.append("power cut = kill -9 then `echo 3 > /proc/sys/vm/drop_caches` (clean page cache only: it "
                     "cannot throw away data the kernel has not yet written, as a real power loss can)")


def disk_full(s: Session, variant: str, row: Row) -> None:
    """The model cache on a small tmpfs filled to the last byte: the old model keeps serving, the error is reported,
    and once space is back the update goes through."""
    if not s.target.root:
        row.status, row.error = "n/a", "needs root on the device to mount a tmpfs"
        return
    run_id = s.new_id("disk-full")
    cache = f"{s.target.workdir}/{run_id}/cache"
    size_kib = (s.base.total_bytes * 2) // 1024 + 512
    s.target.mount_tmpfs(cache, size_kib)
    try:
        pub = s.publisher(f"m-{run_id}")
        pub.publish(1)
        agent = s.start_agent(run_id, s.agent_config(run_id, pub.name, variant))
        if s.wait_serving(run_id, 1, FIRST_SERVE_TIMEOUT_S, agent.started) is None:
            raise HilError(f"agent never served v1: {agent.log_tail()}")
        filled = s.target.fill(cache)
        t_pub = pub.publish(2)

        def errors() -> int:
            tel = s.last_telemetry(run_id, t_pub)
            return int(tel.get("store_errors", 0)) + int(tel.get("package_rejects", 0))

        reported = s.wait_until(lambda: errors() > 0, 30, 0.2)
        time.sleep(2)
        still = [int((e.get("after") or {}).get("model_version", -1)) for e in _events(s, run_id, t_pub + 1)]
        row.figures["filler_bytes"] = filled
        row.figures["errors_reported"] = errors()
        row.figures["frames_on_old_model_while_full"] = sum(1 for v in still if v == 1)
        row.check("old_model_serves", bool(still) and set(still) == {1}, f"versions while full: {sorted(set(still))}")
        row.check("error_reported", reported, "store_errors or package_rejects > 0 in telemetry")
        s.target.shell(f"rm -f {shlex.quote(cache)}/filler")
        t_free = time.time()
        served = s.wait_serving(run_id, 2, 60, t_free)
        row.figures["freed_to_serving_s"] = round(served.t - t_free, 3) if served else None
        row.check("recovers", served is not None, "v2 served once space was freed")
        _served_versions_ok(s, row, run_id, set(pub.published))
        s.stop_agents()
    finally:
        s.target.umount(cache)


def camera_gone(s: Session, variant: str, row: Row, gone_s: float = 10.0) -> None:
    """An HTTP MJPEG camera on the device stops for 10 s and comes back: time to reconnect, frames lost."""
    run_id = s.new_id("camera")
    cam = DeviceCamera(s.target, f"{s.target.workdir}/{run_id}", "camera", camera_port(run_id), fps=15)
    cam.start()
    pub = s.publisher(f"m-{run_id}")
    pub.publish(1)
    cfg = s.agent_config(run_id, pub.name, variant, source={
        "type": "stream", "url": cam.url, "reconnect_backoff_s": 0.2, "policy": "all", "queue_size": 64})
    try:
        agent = s.start_agent(run_id, cfg)
        if s.wait_serving(run_id, 1, FIRST_SERVE_TIMEOUT_S, agent.started) is None:
            raise HilError(f"agent never served from the camera: {agent.log_tail()}")
        time.sleep(3)
        cam.stop()
        t_gone = time.time()
        time.sleep(gone_s)
        cam.start()
        t_back = time.time()
        ev = s.wait_event(run_id, 60, t_back + 0.05)
        row.figures["reconnect_s"] = round(ev.t - t_back, 3) if ev else None
        time.sleep(3)
        agent.terminate(20)
        sent = cam.frames_sent()
        tel = s.last_telemetry(run_id)
        inferred = int(tel.get("frames", 0))
        row.figures.update({"camera_frames_sent": sent, "frames_inferred": inferred,
                            "frames_lost": max(0, sent - inferred), "gone_s": round(t_back - t_gone, 2),
                            "source_errors": int(tel.get("source_errors", 0))})
        row.check("reconnected", ev is not None, "results again after the camera came back")
        row.notes.append("frames lost = frames the camera sent minus frames the agent inferred (its last telemetry "
                         "before exit); frames in the TCP buffers when the camera went are counted as lost")
    finally:
        cam.stop()


def multi_camera_gone(s: Session, variant: str, row: Row, cameras: int = 4, fps: float = 10.0,
                      window_s: float = 5.0, gone_s: float = 7.0) -> None:
    """One agent serves 4 MJPEG cameras; one is unplugged for 7 s and comes back. From the result events and the
    per-stream telemetry the fleet side received: the others keep their rate, the gone stream shows it stalled and
    reconnecting, and it resumes."""
    run_id = s.new_id("multi-camera")
    run_dir = f"{s.target.workdir}/{run_id}"
    names = [f"cam{i}" for i in range(cameras)]
    gone = names[cameras // 2]
    row.link = f"{cameras} cameras at {fps:g} fps, {gone} gone {gone_s:g} s"
    cams = {n: DeviceCamera(s.target, run_dir, n, camera_port(run_id, i, cameras), fps)
            for i, n in enumerate(names)}
    try:
        for cam in cams.values():
            cam.start()
        pub = s.publisher(f"m-{run_id}")
        pub.publish(1)
        cfg = s.agent_config(run_id, pub.name, variant)
        del cfg["source"]  # `streams:` replaces the single source
        # fifo, no staleness cap: every frame a camera sends is inferred, so a rate that moves is the agent's doing.
        cfg["streams"] = [{"name": n, "source": {"type": "stream", "url": c.url, "reconnect_backoff_s": 0.2},
                           "policy": "fifo", "ring_size": 8, "stale_ms": None, "stall_s": 2.0}
                          for n, c in cams.items()]
        agent = s.start_agent(run_id, cfg)

        def serving(t0: float) -> set[str]:
            return {str((m.json() or {}).get("stream")) for m in s.messages(run_id, "events", t0)}

        if not s.wait_until(lambda: serving(agent.started) >= set(names), FIRST_SERVE_TIMEOUT_S, 0.2):
            raise HilError(f"agent never served every camera (results from {sorted(serving(agent.started))}): "
                           f"{agent.log_tail()}")
        t0 = time.time() + 1.0  # the first second catches up on what queued while the model loaded
        time.sleep(1.0 + window_s)
        t_gone = time.time()
        cams[gone].stop()
        time.sleep(gone_s)
        t_back = time.time()
        cams[gone].start()
        resumed = s.wait_until(lambda: gone in serving(t_back), 60, 0.1)
        t_resumed = time.time()
        time.sleep(window_s)
        t_end = time.time()
        agent.terminate(20)
    finally:
        for cam in cams.values():
            cam.stop()
    events = [b for m in s.messages(run_id, "events", agent.started) if isinstance(b := m.json(), dict)]
    telemetry = [b for m in s.messages(run_id, "telemetry", agent.started) if isinstance(b := m.json(), dict)]
    # Rates count frames the agent produced in each window; the first second after the unplug is grace for frames
    # already in flight (the ring, the TCP buffers).
    phases = Phases(before=(t0, t_gone), unplugged=t_gone, gone=(t_gone + 1.0, t_back), back=t_back,
                    after=(t_resumed if resumed else t_back, t_end))
    verdict = judge(events, telemetry, names, gone, phases)
    row.figures.update({"cameras": cameras, "gone_stream": gone, "gone_s": round(t_back - t_gone, 2)})
    row.figures.update(verdict.figures)
    row.series.update(verdict.series)
    for name, met, detail in verdict.checks:
        row.check(name, met, detail)
    row.figures["camera_frames_sent"] = sum(c.frames_sent() for c in cams.values())
    row.notes.append("rates = result events per second by their production time (the agent's `ts`), per stream, "
                     "in each window: before (all cameras up), while gone (from 1 s after the unplug, grace for "
                     "frames in flight), after (once the gone stream's results came back); tel_* are the agent's "
                     "own per-stream telemetry (processed_fps over its last 5 s); reconnect_s = camera started "
                     "again to the gone stream's first result, and includes the agent's reconnect backoff (0.2 s, "
                     "doubling per failed try up to 30 s), so it grows with how long the camera was gone")


def hot_swap_under_load(s: Session, variant: str, row: Row) -> None:
    """v2 published while frames stream at 30 fps (policy all): frames lost and the longest gap around the swap."""
    run_id, pub, agent = _start_serving(s, row, "hot-swap", variant)
    time.sleep(2)
    t_pub = pub.publish(2)
    served = s.wait_serving(run_id, 2, 60, t_pub)
    time.sleep(2)
    agent.terminate(20)
    evs = sorted(_events(s, run_id), key=lambda e: e["seq"])
    frames = [(int(e["after"]["frame"]), int(e["after"]["model_version"]), int(e["ts"])) for e in evs if e.get("after")]
    idx = [f for f, _, _ in frames]
    lost = sum(b - a - 1 for a, b in itertools.pairwise(idx) if b > a + 1)
    swap_at = next((ts for _, v, ts in frames if v == 2), None)
    gaps = [(b[2] - a[2]) for a, b in itertools.pairwise(frames)]
    near = [(b[2] - a[2]) for a, b in itertools.pairwise(frames)
            if swap_at is not None and abs(b[2] - swap_at) < 1000]
    tel = s.last_telemetry(run_id)
    row.figures.update({
        "frames": len(frames), "frames_lost": lost, "longest_gap_ms": max(gaps) if gaps else None,
        "longest_gap_near_swap_ms": max(near) if near else None, "agent_swap_pause_ms": tel.get("swap_pause_ms"),
        "capture_drops": tel.get("drops"), "publish_to_serving_s": round(served.t - t_pub, 3) if served else None,
    })
    if swap_at is not None:
        row.series["frame_interval_ms"] = [[round((b[2] - swap_at) / 1000, 3), b[2] - a[2]]
                                           for a, b in itertools.pairwise(frames)]
    row.check("swapped", served is not None, "v2 served")
    row.check("zero_swap_frames_lost", lost == 0 and int(tel.get("drops", 0) or 0) == 0,
              f"{lost} frame indices missing, {tel.get('drops')} capture drops")
    _served_versions_ok(s, row, run_id, set(pub.published))
    row.notes.append("frame interval = difference of the result events' production times (ms); the agent's own "
                     "swap_pause_ms is the longest gap it measured around the swap")


def _degraded(s: Session) -> None:
    if s.cloud.mqtt_proxy is not None:
        s.cloud.mqtt_proxy.set_delay(300, 100)
    s.lab.set_loss(10)


def _slow(s: Session) -> None:
    s.lab.rate_limit(1000, burst_bytes=16000, latency_ms=1000)


LINK_CONDITIONS: dict[str, Callable[[Session], None]] = {
    "clean": lambda s: None,
    "delay 300+/-100 ms, loss 10 %": _degraded,
    "1 Mbit/s": _slow,
}


def latency_cdf(s: Session, variant: str, row: Row, per_condition_s: float = 4.0) -> None:
    """Per-stage latency histograms from the agent's /metrics under each link condition (bucket CDF)."""
    _run_id, _pub, agent = _start_serving(s, row, "latency", variant)
    prev = histograms(s.scrape())
    for name, apply in LINK_CONDITIONS.items():
        apply(s)
        try:
            time.sleep(per_condition_s)
            now = histograms(s.scrape())
        finally:
            s.lab.clear()
            if s.cloud.mqtt_proxy is not None:
                s.cloud.mqtt_proxy.set_delay(0, 0)
        for stage, buckets in now.items():
            base = dict(prev.get(stage, []))
            delta = [(le, n - base.get(le, 0.0)) for le, n in buckets]
            total = delta[-1][1] if delta else 0.0
            if total <= 0:
                continue
            row.series[f"{stage}|{name}"] = [[le * 1000, n / total] for le, n in delta if le != float("inf")]
            p50 = next((le * 1000 for le, n in delta if n / total >= 0.5), None)
            p99 = next((le * 1000 for le, n in delta if n / total >= 0.99), None)
            row.figures[f"{stage}_p50_le_ms|{name}"] = p50
            row.figures[f"{stage}_p99_le_ms|{name}"] = p99
        prev = now
    agent.terminate(20)
    row.check("measured", bool(row.series), "histograms scraped")
    row.link = ", ".join(LINK_CONDITIONS)
    row.notes.append("figures are bucket upper bounds (the histogram's resolution), per link condition window")


def clock_step(s: Session, variant: str, row: Row) -> None:
    """The agent's clock stepped 1 h forward, then back, through libfaketime (a per-process offset; the host clock
    is never touched): frames, telemetry and the served model must carry on."""
    lib = s.target.faketime_lib()
    if lib is None:
        row.status, row.error = "n/a", "libfaketime is not installed on the device (apt-get install -y libfaketime)"
        return
    run_id = s.new_id("clock")
    offset_file = f"{s.target.workdir}/{run_id}/faketime"
    s.target.write(offset_file, b"+0\n")
    env = {"LD_PRELOAD": lib, "FAKETIME_TIMESTAMP_FILE": offset_file, "FAKETIME_CACHE_DURATION": "1",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_DONT_RESET": "1"}
    pub = s.publisher(f"m-{run_id}")
    pub.publish(1)
    agent = s.start_agent(run_id, s.agent_config(run_id, pub.name, variant), env)
    if s.wait_serving(run_id, 1, FIRST_SERVE_TIMEOUT_S, agent.started) is None:
        raise HilError(f"agent under libfaketime never served: {agent.log_tail()}")
    phases: list[tuple[str, float, float]] = []
    for label, offset in (("before", "+0"), ("forward 1 h", "+3600"), ("back", "+0")):
        s.target.write(offset_file, f"{offset}\n".encode())
        t0 = time.time()
        time.sleep(4)
        phases.append((label, t0, time.time()))
    t_pub = pub.publish(2)
    served = s.wait_serving(run_id, 2, 30, t_pub)
    agent.terminate(20)
    msgs = s.cloud.observer.since(agent.started)
    for label, a, b in phases:
        evs = [m for m in msgs if a + 1.5 <= m.t < b and m.topic.endswith("/events")]
        tel = [(m, m.json() or {}) for m in msgs if a + 1.5 <= m.t < b and m.topic.endswith("/telemetry")]
        key = label.replace(" ", "_")
        row.figures[f"results_per_s_{key}"] = round(len(evs) / (b - a - 1.5), 1)
        offsets = sorted(body.get("ts", 0) / 1000 - m.t for m, body in tel)
        row.figures[f"clock_ahead_s_{key}"] = round(offsets[len(offsets) // 2], 1) if offsets else None
        row.check(f"frames_flow_{key}", len(evs) > 0, f"{len(evs)} results while {label}")
    forward = row.figures.get("clock_ahead_s_forward_1_h")
    row.check("offset_applied", isinstance(forward, float) and forward > 3000, f"device clock ahead by {forward} s")
    row.check("update_after_steps", served is not None, "v2 served after the clock went forward and back")
    _served_versions_ok(s, row, run_id, set(pub.published))
    row.notes.append("libfaketime offsets CLOCK_REALTIME of the agent process only (FAKETIME_DONT_FAKE_MONOTONIC=1), "
                     "as a real clock step would; a host clock step needs CAP_SYS_TIME and moves every process")


SCENARIOS: dict[str, Scenario] = {sc.name: sc for sc in [
    Scenario("first_deploy", first_deploy, True, True, "publish to serving, seconds"),
    Scenario("update_degraded", update_degraded, True, False, "update under 300+/-100 ms delay and 10 % loss"),
    Scenario("link_cut", link_cut_mid_download, False, False, "link cut mid-download: resume, bytes twice"),
    Scenario("s3_killed", s3_killed_mid_download, False, False, "S3 endpoint killed mid-download"),
    Scenario("broker_outage", broker_outage, False, False, "broker down 60 s at 20 msg/s"),
    Scenario("kill9_install", kill9_during_install, False, False, "20 kill -9 + power cut during install"),
    Scenario("disk_full", disk_full, False, True, "model cache full: old model serves, error reported"),
    Scenario("camera_gone", camera_gone, False, False, "camera gone 10 s: reconnect time, frames lost"),
    Scenario("multi_camera_gone", multi_camera_gone, False, False,
             "1 of 4 cameras gone 7 s: the others' rate, stall, resume"),
    Scenario("hot_swap", hot_swap_under_load, True, True, "hot-swap under load: frames lost, longest gap"),
    Scenario("latency_cdf", latency_cdf, True, False, "per-stage latency CDF per link condition"),
    Scenario("clock_step", clock_step, False, False, "device clock stepped forward and back"),
]}


def select(names: list[str] | None) -> list[Scenario]:
    """Scenarios by name (all when None); an unknown name is one clear error."""
    if not names:
        return list(SCENARIOS.values())
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise HilError(f"unknown scenario {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    return [SCENARIOS[n] for n in names]
