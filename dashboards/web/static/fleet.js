// The fleet page: a summary every client shares and one page of devices, worst first, both read from the server's
// snapshot of the last live tick; the live channel carries only the summary, and each tick refetches the one page.
"use strict";
(function () {
  const PAGE = 100, TREND_MAX = 720, GROUPS_SHOWN = 12;
  const FIGS = new Set(["fps", "e2e_ms_p95", "cpu_pct", "temp_c", "objects_per_min"]);
  const COLS = [
    ["device_id", (d) => d.device_id],
    ["status", (d) => d.status],
    ["groups", (d) => d.groups.join(", ")],
    ["cohort", (d) => d.cohort || "–"],
    ["model_version", (d) => (d.model_version ? (d.model_name || "") + " v" + d.model_version : "–")],
    ["desired_version", (d) => (d.desired_version ? "v" + d.desired_version
      + (d.desired_version === d.model_version ? " ✓" : " (updating)")
      : d.desired_channel ? "channel " + d.desired_channel : "–")],
    // What moves the device: its channel's pointer ("latest") or only the fleet's desired state.
    ["follow", (d) => (d.follow === "latest" ? "latest (" + (d.channel || "stable") + ")" : d.follow || "–")],
    ["variant", (d) => d.variant || "–"],
    ["backend", (d) => d.backend || "–"],
    ["fps", (d) => EF.fmt(d.fps)],
    ["e2e_ms_p95", (d) => EF.fmt(d.e2e_ms_p95, 2)],
    ["cpu_pct", (d) => EF.fmt(d.cpu_pct)],
    ["temp_c", (d) => EF.fmt(d.temp_c)],
    ["last_seen_ms", (d) => EF.ago(d.last_seen_ms) + (EF.BAD.has(d.status) ? " · stale" : "")],
    ["objects_per_min", (d) => EF.fmt(d.objects_per_min)],
    ["refused", (d) => (EF.misbehaving(d) ? d.refused + " refused, " + d.shed + " shed" : "–")],
  ];
  const SERIES = [["online", "#2e7d32"], ["stale", "#f9a825"], ["offline", "#c62828"], ["stopped", "#78909c"],
    ["unknown", "#9e9e9e"], ["misbehaving", "#ef6c00"], ["updating", "#1565c0"]];
  const tbody = document.querySelector("#devices tbody");
  const filterEl = document.getElementById("filter"), statusEl = document.getElementById("status-filter");
  const state = { offset: 0, sort: "severity", desc: false, total: 0, rows: [] };
  let inflight = false, again = false, plot = null, trend = null, trendStep = 5, loaded = false;

  async function getJSON(path) {
    const r = await fetch(path, { credentials: "same-origin" });
    if (!r.ok) throw new Error(r.status + " " + r.statusText);
    return { data: await r.json(), total: parseInt(r.headers.get("X-Total-Count") || "0", 10) };
  }

  function pageURL() {
    const p = new URLSearchParams({ offset: state.offset, limit: PAGE, sort: state.sort });
    if (state.desc) p.set("desc", "true");
    if (filterEl.value.trim()) p.set("q", filterEl.value.trim());
    if (statusEl.value) p.set("status", statusEl.value);
    return "/api/fleet/devices?" + p.toString();
  }

  function row(d) {
    const tr = document.createElement("tr");
    tr.dataset.id = d.device_id; tr.dataset.status = d.status; tr.dataset.condition = d.condition;
    if (d.cohort) tr.dataset.cohort = d.cohort;
    const stale = EF.BAD.has(d.status);
    if (stale) tr.classList.add("bad");
    if (EF.misbehaving(d)) tr.classList.add("warn");
    for (const [key, text] of COLS) {
      const td = document.createElement("td");
      td.dataset.key = key;
      if (key === "device_id") {
        const a = document.createElement("a");
        a.href = "/devices/" + encodeURIComponent(d.device_id); a.textContent = text(d);
        td.appendChild(a);
      } else td.textContent = text(d);
      if (key === "status") td.className = "status";
      if (key === "cohort" && d.cohort) { td.className = "cohort " + d.cohort; td.title = "rollout " + d.rollout_id; }
      if (key === "desired_version" && d.desired_version && d.desired_version !== d.model_version) td.className = "updating";
      if (FIGS.has(key)) {
        td.className = "num";
        if (stale && d[key] !== null && d[key] !== undefined) {
          td.classList.add("stale");
          td.title = "stale: the last figure received, " + EF.ago(d.last_seen_ms) + "; the device is " + d.status;
        }
      }
      tr.appendChild(td);
    }
    return tr;
  }

  function showPage(rows, total) {
    state.rows = rows; state.total = total;
    tbody.replaceChildren(...rows.map(row));
    const end = Math.min(state.offset + rows.length, total);
    document.getElementById("shown").textContent = (total ? (state.offset + 1) + "–" + end : "0") + " of " + total + " devices";
    document.getElementById("prev").disabled = state.offset === 0;
    document.getElementById("next").disabled = state.offset + PAGE >= total;
  }

  function pills(id, counts, badKeys, limit) {
    const el = document.getElementById(id);
    let parts = Object.entries(counts || {}).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    const more = limit && parts.length > limit ? parts.length - limit : 0;
    if (more) parts = parts.slice(0, limit);
    const spans = parts.map(([k, n]) => {
      const s = document.createElement("span");
      s.className = "pill" + (badKeys && badKeys.has(k) && n > 0 ? " bad" : "");
      s.dataset.key = k; s.textContent = k + ": " + n;
      return s;
    });
    if (more) { const s = document.createElement("span"); s.className = "note"; s.textContent = "+" + more + " more"; spans.push(s); }
    el.replaceChildren(...spans);
  }

  function showCounts(c) {
    pills("by-status", c.status, EF.BAD);
    pills("by-condition", Object.fromEntries(Object.entries(c.condition || {}).filter(([k]) => k !== "ok")),
      new Set(["misbehaving", "offline", "stale"]));
    pills("by-version", c.version, null, GROUPS_SHOWN);
    pills("by-convergence", c.convergence, null);
    pills("by-cohort", c.cohort, null);
    pills("by-group", c.group, null, GROUPS_SHOWN);
  }

  function showTrend(cols) {
    trend = [cols.ts.slice(), ...SERIES.map(([k]) => (cols[k] || []).slice())];
    const el = document.getElementById("trend");
    if (typeof uPlot === "undefined") return;
    plot = new uPlot({ width: Math.max(360, Math.min(720, el.clientWidth || 560)), height: 160, scales: { x: { time: true } },
      series: [{}, ...SERIES.map(([label, stroke]) => ({ label, stroke, width: 1.5 }))], axes: [{}, { size: 50 }] },
    trend, el);
    EF.trend = plot;
  }

  function addTrend(cols) {
    if (!trend || !cols || !cols.ts.length) return;
    const ts = cols.ts[cols.ts.length - 1];
    const last = trend[0].length - 1;
    const step = trendStep || 5;  // one point per step: the newest follows the ticks until the next step begins
    const replace = last >= 0 && Math.floor(trend[0][last] / step) === Math.floor(ts / step);
    SERIES.forEach(([k], i) => { const v = (cols[k] || [0])[0]; if (replace) trend[i + 1][last] = v; else trend[i + 1].push(v); });
    if (replace) trend[0][last] = ts; else trend[0].push(ts);
    if (trend[0].length > TREND_MAX) for (const s of trend) s.shift();
    if (plot) plot.setData(trend);
  }

  async function refresh() {
    if (inflight) { again = true; return; }
    inflight = true;
    try {
      const p = await getJSON(pageURL());
      if (state.offset > 0 && state.offset >= p.total) { state.offset = Math.max(0, Math.floor((p.total - 1) / PAGE) * PAGE); again = true; }
      else showPage(p.data, p.total);
    } catch (e) { EF.say("fleet page: " + e.message, "error"); }
    inflight = false;
    if (again) { again = false; refresh(); }
  }

  function markLoaded() {
    if (loaded) return;
    loaded = true;
    performance.mark("fleet-loaded");
    document.body.dataset.loaded = "1";
  }

  // The page came with the summary and its first page (the server's snapshot); without them, both are asked for.
  const slot = document.getElementById("initial");
  const initial = slot ? JSON.parse(slot.textContent) : null;
  const first = initial ? Promise.resolve([{ data: initial.summary }, { data: initial.page.rows, total: initial.page.total }])
    : Promise.all([getJSON("/api/fleet/summary"), getJSON(pageURL())]);
  first.catch(() => {});

  document.querySelectorAll("#devices th").forEach((th) => th.addEventListener("click", () => {
    const key = th.dataset.key;
    if (key === state.sort) state.desc = !state.desc; else { state.sort = key; state.desc = false; }
    document.querySelectorAll("#devices th").forEach((h) => h.classList.remove("sorted", "desc"));
    th.classList.add("sorted"); if (state.desc) th.classList.add("desc");
    state.offset = 0; refresh();
  }));
  let typing = null;
  filterEl.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(() => { state.offset = 0; refresh(); }, 200); });
  statusEl.addEventListener("change", () => { state.offset = 0; refresh(); });
  document.getElementById("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); refresh(); });
  document.getElementById("next").addEventListener("click", () => { if (state.offset + PAGE < state.total) { state.offset += PAGE; refresh(); } });
  // "12 s ago" moves with the clock, not only with new data (the column found by key: columns come and go).
  const LAST_SEEN = COLS.find(([key]) => key === "last_seen_ms")[1];
  setInterval(() => {
    tbody.querySelectorAll("tr").forEach((tr, i) => {
      const d = state.rows[i]; if (!d) return;
      const td = tr.querySelector('td[data-key="last_seen_ms"]');
      const t = LAST_SEEN(d); if (td && td.textContent !== t) td.textContent = t;
    });
  }, 1000);

  EF.init("Fleet", initial ? initial.me : null).then(async (me) => {
    if (!me) return;
    try {
      const [s, p] = await first;
      showCounts(s.data.counts);
      showPage(p.data, p.total);
      markLoaded();
      trendStep = s.data.trend_step_s || trendStep;
      showTrend(s.data.trend);
    } catch (e) { EF.say("fleet page: " + e.message, "error"); }
    EF.live("?rows=none", (msg) => {
      if (msg.summary) {
        showCounts(msg.summary.counts);
        trendStep = msg.summary.trend_step_s || trendStep;
        if (msg.type !== "snapshot") addTrend(msg.summary.trend);
      }
      refresh();
    });
  });
})();
