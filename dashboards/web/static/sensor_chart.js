// A sensor device's side of the device page: is its anomaly score near the line it alarms at. The score's
// quantiles per telemetry window against the threshold, with a mark where an alert started (the device's alert
// counter went up) and where one ended (its open alerts went down), all from the metric table's figures in the
// device's history. Absent for a device that never reported a score (a camera).
"use strict";
(function () {
  const id = decodeURIComponent(location.pathname.split("/").pop());
  const base = "/api/devices/" + encodeURIComponent(id) + "/history";
  const POLL_MS = 5000, MAX_POINTS = 8640;
  const QUANTILES = [50, 95, 99];
  const COLORS = ["#90caf9", "#1e88e5", "#0d47a1"];
  const THRESHOLD = "#e53935", START = "#d50000", END = "#2e7d32";
  const xs = [], scores = QUANTILES.map(() => []), limits = [];
  const marks = []; // {ts_ms, kind: "start" | "end"}
  let plot = null, lastTs = 0, prev = null, timer = null;
  EF.sensorChart = { marks, threshold: null };

  const isSensor = (v) => "anomaly_threshold" in v || QUANTILES.some((q) => "anomaly_score_p" + q in v);

  // Alert marks from two figures: alerts fired since boot (a counter) and alerts open now. A counter below the
  // previous one is a restart: the device's alerts start again from zero, nothing ended or started by itself.
  function mark(tsMs, v) {
    const fired = typeof v.anomaly_alerts === "number" ? v.anomaly_alerts : null;
    const open = typeof v.anomaly_alerts_active === "number" ? v.anomaly_alerts_active : null;
    if (prev && fired !== null && prev.fired !== null && fired > prev.fired) marks.push({ ts_ms: tsMs, kind: "start" });
    if (prev && open !== null && prev.open !== null && open < prev.open && !(fired !== null && prev.fired !== null
        && fired < prev.fired)) marks.push({ ts_ms: tsMs, kind: "end" });
    prev = { fired, open };
  }

  function drawMarks(u) {
    const ctx = u.ctx, top = u.bbox.top, bottom = u.bbox.top + u.bbox.height;
    ctx.save();
    ctx.lineWidth = 2 * devicePixelRatio;
    for (const m of marks) {
      const x = Math.round(u.valToPos(m.ts_ms / 1000, "x", true));
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      ctx.strokeStyle = m.kind === "start" ? START : END;
      ctx.setLineDash(m.kind === "start" ? [] : [6 * devicePixelRatio, 4 * devicePixelRatio]);
      ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, bottom); ctx.stroke();
    }
    ctx.restore();
  }

  function build() {
    const box = document.createElement("div");
    box.className = "chart"; box.id = "sensor-chart";
    const h = document.createElement("h3");
    h.textContent = "Anomaly score (p50, p95, p99 per report) and threshold; alert start (red) and end (green, "
      + "dashed)";
    const el = document.createElement("div");
    el.id = "chart-anomaly";
    box.append(h, el);
    document.querySelector(".charts").prepend(box);
    plot = new uPlot({
      width: Math.max(420, el.clientWidth || 460), height: 220, scales: { x: { time: true } },
      series: [{}, ...QUANTILES.map((q, i) => ({ label: "score p" + q, stroke: COLORS[i], width: 1.5,
        spanGaps: false })), { label: "threshold", stroke: THRESHOLD, width: 2, dash: [8, 4] }],
      axes: [{}, { size: 55 }],
      hooks: { draw: [drawMarks] },
    }, [xs, ...scores, limits], el);
    EF.charts = EF.charts || {};
    EF.charts["chart-anomaly"] = plot;
  }

  function add(samples) {
    let grew = false;
    for (const s of samples) {
      if (s.ts_ms <= lastTs) continue;
      lastTs = s.ts_ms;
      const v = s.values || {};
      if (!isSensor(v)) continue;
      xs.push(s.ts_ms / 1000);
      QUANTILES.forEach((q, i) => scores[i].push(typeof v["anomaly_score_p" + q] === "number"
        ? v["anomaly_score_p" + q] : null));
      limits.push(typeof v.anomaly_threshold === "number" ? v.anomaly_threshold : null);
      if (typeof v.anomaly_threshold === "number") EF.sensorChart.threshold = v.anomaly_threshold;
      mark(s.ts_ms, v);
      grew = true;
    }
    if (!grew) return;
    if (xs.length > MAX_POINTS) {
      const cut = xs.length - MAX_POINTS;
      for (const a of [xs, ...scores, limits]) a.splice(0, cut);
    }
    if (!plot) build(); else plot.setData([xs, ...scores, limits]);
  }

  // Only once device.js has shown the device: an unknown one (a 404 there) is never asked about again here.
  function known() { return document.getElementById("title").textContent === "Device " + id; }

  async function poll() {
    if (!known()) return;
    try {
      add(await EF.api(base + (lastTs ? "?since_ms=" + (lastTs + 1) : "")));
    } catch (err) {
      if (/^no device/.test(err.message)) clearInterval(timer);  // removed or unknown: nothing more to show
    }
  }

  poll();
  timer = setInterval(poll, POLL_MS);
  document.addEventListener("ef:device-removed", () => clearInterval(timer));
})();
