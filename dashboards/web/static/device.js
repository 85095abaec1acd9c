// One device: is this camera healthy and what is it seeing. Live charts over the kept history (lines break across
// gaps and restarts), the processing stages apart from capture wait, recent results with per-frame runs collapsed,
// the state payload, and the actions (ping shows the device's reply).
"use strict";
(function () {
  const id = decodeURIComponent(location.pathname.split("/").pop());
  const base = "/api/devices/" + encodeURIComponent(id);
  const COLORS = ["#8e24aa", "#3949ab", "#00897b", "#f4511e", "#6d4c41", "#000000"];
  const MAX_POINTS = 8640;
  const GAP_INTERVALS = 3; // a silence longer than this many telemetry intervals breaks the lines
  const PING_WAIT_MS = 16000;
  // Capture wait is time spent waiting for the camera's next frame: it dwarfs the work, so it has its own chart.
  const charts = [
    { el: "chart-latency", keys: ["e2e_ms_p95", "capture_wait_ms_p95"], labels: ["end-to-end", "capture wait"] },
    { el: "chart-stages", keys: ["preprocess", "infer", "postprocess", "publish"].map((s) => s + "_ms_p95"),
      labels: ["preprocess", "inference", "postprocess", "publish"] },
    { el: "chart-fps", keys: ["fps", "drops"], labels: ["fps", "dropped frames (since boot)"] },
    { el: "chart-cpu", keys: ["cpu_pct", "temp_c"], labels: ["CPU %", "temperature °C"] },
    { el: "chart-rss", keys: ["rss_mb"], labels: ["RSS MiB"] },
  ];
  let last = null; // the last sample added: {ts_ms, uptime}
  let intervalS = 5;
  const xs = [];
  for (const c of charts) c.ys = c.keys.map(() => []);
  EF.charts = {};

  function build() {
    for (const c of charts) {
      const el = document.getElementById(c.el);
      const opts = {
        width: Math.max(420, el.clientWidth || 460), height: 220,
        scales: { x: { time: true } },
        series: [{}, ...c.labels.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], width: 1.5,
          spanGaps: false }))],
        axes: [{}, { size: 55 }],
      };
      c.plot = new uPlot(opts, [xs, ...c.ys], el);
      EF.charts[c.el] = c.plot;
    }
  }

  function push(tsMs, values) {
    xs.push(tsMs / 1000);
    for (const c of charts) c.keys.forEach((k, i) => c.ys[i].push(values && k in values ? values[k] : null));
  }

  function add(samples) {
    for (const s of samples) {
      if (last && s.ts_ms <= last.ts_ms) continue;
      const uptime = "uptime_s" in s.values ? s.values.uptime_s : null;
      const silent = last && s.ts_ms - last.ts_ms > GAP_INTERVALS * intervalS * 1000;
      const restarted = last && uptime !== null && last.uptime !== null && uptime < last.uptime;
      if (silent || restarted) push(last.ts_ms + 1, null); // an empty point: uPlot breaks the line there
      push(s.ts_ms, s.values);
      last = { ts_ms: s.ts_ms, uptime };
    }
    if (xs.length > MAX_POINTS) {
      const cut = xs.length - MAX_POINTS;
      xs.splice(0, cut);
      for (const c of charts) c.ys.forEach((y) => y.splice(0, cut));
    }
    for (const c of charts) if (c.plot) c.plot.setData([xs, ...c.ys]);
  }

  function summary(row) {
    const el = document.getElementById("summary");
    el.replaceChildren();
    const items = [["status", row.status], ["groups", row.groups.join(", ") || "–"],
      ["model", row.model_version ? (row.model_name || "") + " v" + row.model_version : "none"],
      ["desired", row.desired_version ? "v" + row.desired_version
        : row.desired_channel ? "channel " + row.desired_channel : "–"],
      ["follows", row.follow === "latest" ? "latest (" + (row.channel || "stable") + ")" : row.follow || "–"],
      ["variant", row.variant || "–"],
      ["backend", row.backend || "–"], ["agent", row.agent_version || "–"], ["restarts", String(row.restarts)],
      ["last seen", EF.ago(row.last_seen_ms)]];
    for (const [k, v] of items) {
      const s = document.createElement("span");
      s.className = "pill" + (k === "status" ? (EF.BAD.has(v) ? " bad" : v === "online" ? " ok" : "") : "");
      s.dataset.key = k;
      s.textContent = k + ": " + v;
      el.appendChild(s);
    }
    if (EF.misbehaving(row)) {
      const s = document.createElement("span");
      s.className = "pill warn"; s.dataset.key = "misbehaving";
      s.title = "The control plane refused (malformed, out of range) or shed (flooding) some of its messages";
      s.textContent = "misbehaving: " + row.refused + " refused, " + row.shed + " shed";
      el.appendChild(s);
      if (row.last_refused) {
        const why = document.createElement("span");
        why.className = "pill warn"; why.dataset.key = "last-refused";
        why.textContent = "last refused: " + row.last_refused;
        el.appendChild(why);
      }
    }
    for (const [comp, err] of Object.entries(row.degraded || {})) {
      const s = document.createElement("span"); s.className = "pill bad"; s.textContent = comp + ": " + err;
      el.appendChild(s);
    }
  }

  async function events() {
    const list = await EF.api(base + "/events?limit=30&collapsed=true");
    document.querySelector("#events tbody").replaceChildren(...list.map((e) => {
      const tr = document.createElement("tr");
      tr.dataset.type = e.type;
      const when = new Date(e.ts_ms).toLocaleTimeString();
      const type = e.count > 1 ? e.type + " ×" + e.count : e.type;
      for (const t of [when, type, e.label || "–", EF.fmt(e.score, 3), e.frame === null ? "–" : String(e.frame),
        e.model_version ? "v" + e.model_version : "–"]) {
        const td = document.createElement("td"); td.textContent = t; tr.appendChild(td);
      }
      if (e.count > 1) tr.title = e.count + " results since " + new Date(e.first_ts_ms).toLocaleTimeString();
      return tr;
    }));
  }

  async function detail() {
    const d = await EF.api(base);
    document.getElementById("title").textContent = "Device " + d.row.device_id;
    summary(d.row);
    document.getElementById("state").textContent = JSON.stringify(d.state, null, 2);
    document.dispatchEvent(new CustomEvent("ef:device", { detail: d }));  // models.js lists the models it serves
    const interval = d.state && d.state.telemetry_interval_s;
    if (typeof interval === "number" && interval > 0) intervalS = interval;
    if (!document.getElementById("deploy-version").value && d.row.model_version) {
      document.getElementById("deploy-version").value = d.row.model_version;
    }
  }

  function pingSays(text, kind) {
    const el = document.getElementById("ping-reply");
    el.textContent = text; el.className = "pill " + kind; el.hidden = false;
  }

  async function awaitReply(rid) {
    pingSays("ping: waiting for " + id + " to reply…", "");
    const until = Date.now() + PING_WAIT_MS;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, 400));
      let c;
      try { c = await EF.api(base + "/commands/" + encodeURIComponent(rid)); } catch (e) { continue; }
      if (c.state === "replied") {
        if (c.ok) pingSays("ping: " + id + " replied in " + c.round_trip_ms + " ms", "ok");
        else pingSays("ping: " + id + " refused it: " + (c.error || "no reason given"), "bad");
        return;
      }
      if (c.state === "timed_out") break;
    }
    pingSays("ping: no reply from " + id + " within " + (PING_WAIT_MS / 1000 - 1) + " s: it is offline, or does "
      + "not trust this control plane's command key", "bad");
  }

  document.getElementById("ping").addEventListener("click", () => EF.act(base + "/ping", undefined, (res) => {
    if (res.request_id) awaitReply(res.request_id);
  }));
  document.getElementById("rollback").addEventListener("click", () => EF.act(base + "/rollback"));
  document.getElementById("deploy").addEventListener("click", () => {
    const v = parseInt(document.getElementById("deploy-version").value, 10);
    EF.act(base + "/deploy", { version: Number.isFinite(v) ? v : null });
  });
  let removed = false, poller = null, stream = null;
  document.getElementById("remove").addEventListener("click", async () => {
    if (!confirm("Remove " + id + " from the registry? It comes back if it publishes again.")) return;
    try {
      const res = await EF.api(base, "DELETE");
      EF.say(res.message, "info");
      document.querySelectorAll("button.act").forEach((b) => { b.disabled = true; });
      removed = true;  // nothing left to poll: the page keeps what it showed, with no 404s every 5 s
      document.dispatchEvent(new Event("ef:device-removed"));  // the page's other pollers stop too
      clearInterval(poller);
      if (stream) stream.close();
    } catch (e) { EF.say(e.message, "error"); }
  });

  EF.init("").then(async (me) => {
    if (!me) return;
    document.title = id + " · edgeferry";
    try {
      await detail();
    } catch (e) { EF.say(e.message, "error"); return; }
    build();
    const hist = await EF.api(base + "/history");
    add(hist);
    await events();
    if (removed) return;
    stream = EF.live("?rows=device&device=" + encodeURIComponent(id) + "&since_ms=" + (last ? last.ts_ms : 0), (msg) => {
      if (msg.type === "samples") { add(msg.samples); return; }
      const row = msg.devices.find((d) => d.device_id === id);
      if (row) summary(row);
    });
    poller = setInterval(() => { events().catch(() => {}); detail().catch(() => {}); }, 5000);
  });
})();
