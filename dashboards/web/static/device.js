// One device: live charts over the kept history, recent events, the state payload and the actions.
"use strict";
(function () {
  const id = decodeURIComponent(location.pathname.split("/").pop());
  const base = "/api/devices/" + encodeURIComponent(id);
  const STAGES = ["capture_wait", "preprocess", "infer", "postprocess", "publish", "e2e"];
  const COLORS = ["#8e24aa", "#3949ab", "#00897b", "#f4511e", "#6d4c41", "#000000"];
  const MAX_POINTS = 8640;
  const charts = [
    { el: "chart-latency", keys: STAGES.map((s) => s + "_ms_p95"), labels: STAGES },
    { el: "chart-fps", keys: ["fps", "drops"], labels: ["fps", "dropped frames (since boot)"] },
    { el: "chart-cpu", keys: ["cpu_pct", "temp_c"], labels: ["CPU %", "temperature °C"] },
    { el: "chart-rss", keys: ["rss_mb"], labels: ["RSS MiB"] },
  ];
  let lastTs = 0;
  const xs = [];
  for (const c of charts) c.ys = c.keys.map(() => []);

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
    }
  }

  function add(samples) {
    for (const s of samples) {
      if (s.ts_ms <= lastTs) continue;
      lastTs = s.ts_ms;
      xs.push(s.ts_ms / 1000);
      for (const c of charts) c.keys.forEach((k, i) => c.ys[i].push(k in s.values ? s.values[k] : null));
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
      ["desired", row.desired_version ? "v" + row.desired_version : "–"], ["variant", row.variant || "–"],
      ["backend", row.backend || "–"], ["agent", row.agent_version || "–"], ["restarts", String(row.restarts)],
      ["last seen", EF.ago(row.last_seen_ms)]];
    for (const [k, v] of items) {
      const s = document.createElement("span");
      s.className = "pill" + (k === "status" ? (EF.BAD.has(v) ? " bad" : v === "online" ? " ok" : "") : "");
      s.dataset.key = k;
      s.textContent = k + ": " + v;
      el.appendChild(s);
    }
    for (const [comp, err] of Object.entries(row.degraded || {})) {
      const s = document.createElement("span"); s.className = "pill bad"; s.textContent = comp + ": " + err;
      el.appendChild(s);
    }
  }

  async function events() {
    const list = await EF.api(base + "/events?limit=30");
    document.querySelector("#events tbody").replaceChildren(...list.map((e) => {
      const tr = document.createElement("tr");
      for (const t of [new Date(e.ts_ms).toLocaleTimeString(), e.type, e.label || "–", EF.fmt(e.score, 3),
        e.frame === null ? "–" : String(e.frame), e.model_version ? "v" + e.model_version : "–"]) {
        const td = document.createElement("td"); td.textContent = t; tr.appendChild(td);
      }
      return tr;
    }));
  }

  async function detail() {
    const d = await EF.api(base);
    document.getElementById("title").textContent = "Device " + d.row.device_id;
    summary(d.row);
    document.getElementById("state").textContent = JSON.stringify(d.state, null, 2);
    if (!document.getElementById("deploy-version").value && d.row.model_version) {
      document.getElementById("deploy-version").value = d.row.model_version;
    }
  }

  document.getElementById("ping").addEventListener("click", () => EF.act(base + "/ping"));
  document.getElementById("rollback").addEventListener("click", () => EF.act(base + "/rollback"));
  document.getElementById("deploy").addEventListener("click", () => {
    const v = parseInt(document.getElementById("deploy-version").value, 10);
    EF.act(base + "/deploy", { version: Number.isFinite(v) ? v : null });
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
    EF.live("?device=" + encodeURIComponent(id) + "&since_ms=" + lastTs, (msg) => {
      if (msg.type === "samples") { add(msg.samples); return; }
      const row = msg.devices.find((d) => d.device_id === id);
      if (row) summary(row);
    });
    setInterval(() => { events().catch(() => {}); detail().catch(() => {}); }, 5000);
  });
})();
