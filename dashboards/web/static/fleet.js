// The fleet table: one row per device, patched in place from the live channel's batches.
"use strict";
(function () {
  const COLS = [
    ["device_id", (d) => d.device_id],
    ["status", (d) => d.status],
    ["groups", (d) => d.groups.join(", ")],
    ["model_version", (d) => (d.model_version ? (d.model_name || "") + " v" + d.model_version : "–")
      + (d.desired_version && d.desired_version !== d.model_version ? " → v" + d.desired_version : "")],
    ["variant", (d) => d.variant || "–"],
    ["backend", (d) => d.backend || "–"],
    ["fps", (d) => EF.fmt(d.fps)],
    ["e2e_ms_p95", (d) => EF.fmt(d.e2e_ms_p95, 2)],
    ["cpu_pct", (d) => EF.fmt(d.cpu_pct)],
    ["temp_c", (d) => EF.fmt(d.temp_c)],
    ["last_seen_ms", (d) => EF.ago(d.last_seen_ms)],
    ["refused", (d) => (EF.misbehaving(d) ? d.refused + " refused, " + d.shed + " shed" : "–")],
  ];
  const NUM = new Set(["fps", "e2e_ms_p95", "cpu_pct", "temp_c"]);
  const rows = new Map(); // device_id -> {d, tr, cells, text}
  const tbody = document.querySelector("#devices tbody");
  let sortKey = "device_id", sortDesc = false, order = [], dirty = true;
  const filterEl = document.getElementById("filter"), statusEl = document.getElementById("status-filter");

  function makeRow(d) {
    const tr = document.createElement("tr");
    tr.dataset.id = d.device_id;
    const cells = COLS.map(([key]) => {
      const td = document.createElement("td");
      td.className = key === "status" ? "status" : NUM.has(key) ? "num" : "";
      tr.appendChild(td);
      return td;
    });
    const a = document.createElement("a");
    a.href = "/devices/" + encodeURIComponent(d.device_id);
    cells[0].appendChild(a);
    return { d, tr, cells, text: new Array(COLS.length).fill(null), link: a };
  }

  function paint(r) {
    for (let i = 0; i < COLS.length; i++) {
      const t = COLS[i][1](r.d);
      if (r.text[i] === t) continue;
      r.text[i] = t;
      if (i === 0) r.link.textContent = t; else r.cells[i].textContent = t;
    }
    const bad = EF.BAD.has(r.d.status);
    if (r.tr.classList.contains("bad") !== bad) r.tr.classList.toggle("bad", bad);
    const warn = EF.misbehaving(r.d);
    if (r.tr.classList.contains("warn") !== warn) r.tr.classList.toggle("warn", warn);
    r.tr.dataset.status = r.d.status;
  }

  function visible(d) {
    const s = statusEl.value;
    if (s === "misbehaving" ? !EF.misbehaving(d) : s && d.status !== s) return false;
    const f = filterEl.value.trim().toLowerCase();
    if (!f) return true;
    return [d.device_id, d.groups.join(" "), d.model_name || "", d.backend || "", d.variant || "", d.status]
      .join(" ").toLowerCase().includes(f);
  }

  function cmp(a, b) {
    let x = a.d[sortKey], y = b.d[sortKey];
    if (Array.isArray(x)) { x = x.join(","); y = y.join(","); }
    if (x === y) return a.d.device_id < b.d.device_id ? -1 : 1;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * (sortDesc ? -1 : 1);
  }

  function layout() {
    const want = [...rows.values()].filter((r) => visible(r.d)).sort(cmp);
    const same = want.length === order.length && want.every((r, i) => r === order[i]);
    if (!same) {
      const frag = document.createDocumentFragment();
      for (const r of want) frag.appendChild(r.tr);
      tbody.replaceChildren(frag);
      order = want;
    }
    document.getElementById("shown").textContent = want.length + " of " + rows.size + " devices";
    dirty = false;
  }

  function pills(el, counts, badKeys) {
    const parts = Object.entries(counts).sort();
    el.replaceChildren(...parts.map(([k, n]) => {
      const s = document.createElement("span");
      s.className = "pill" + (badKeys && badKeys.has(k) && n > 0 ? " bad" : "");
      s.dataset.key = k;
      s.textContent = k + ": " + n;
      return s;
    }));
  }

  function apply(msg) {
    if (msg.type === "snapshot") { rows.clear(); order = []; }
    for (const d of msg.devices) {
      let r = rows.get(d.device_id);
      if (!r) { r = makeRow(d); rows.set(d.device_id, r); dirty = true; }
      else if (r.d[sortKey] !== d[sortKey] || r.d.status !== d.status || EF.misbehaving(r.d) !== EF.misbehaving(d)) {
      dirty = true;
    }
      r.d = d;
      paint(r);
    }
    for (const id of msg.removed) { rows.delete(id); dirty = true; }
    if (msg.counts) {
      pills(document.getElementById("by-status"), msg.counts.status, EF.BAD);
      pills(document.getElementById("by-version"), msg.counts.version, null);
    }
    if (dirty) layout();
  }

  document.querySelectorAll("#devices th").forEach((th) => th.addEventListener("click", () => {
    const key = th.dataset.key;
    if (key === sortKey) sortDesc = !sortDesc; else { sortKey = key; sortDesc = false; }
    document.querySelectorAll("#devices th").forEach((h) => h.classList.remove("sorted", "desc"));
    th.classList.add("sorted"); if (sortDesc) th.classList.add("desc");
    layout();
  }));
  filterEl.addEventListener("input", layout);
  statusEl.addEventListener("change", layout);
  // "12 s ago" moves with the clock, not only with new data.
  setInterval(() => { for (const r of order) paint(r); }, 1000);

  EF.init("Fleet").then((me) => { if (me) EF.live("", apply); });
})();
