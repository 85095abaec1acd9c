// Current and past rollouts; the selected one's stages, gates against thresholds, decisions and actions.
"use strict";
(function () {
  let selected = new URLSearchParams(location.search).get("id");
  const list = new Map();
  function td(tr, text, cls) { const c = document.createElement("td"); c.textContent = text; if (cls) c.className = cls; tr.appendChild(c); return c; }
  const fig = (v) => (v === null || v === undefined ? "no data" : Number(v).toPrecision(4));

  function drawList() {
    const rows = [...list.values()].sort((a, b) => b.started_ms - a.started_ms);
    document.querySelector("#rollouts tbody").replaceChildren(...rows.map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.id = r.rollout_id;
      if (r.rollout_id === selected) tr.className = "selected";
      td(tr, r.rollout_id); td(tr, r.group); td(tr, r.model + " v" + r.version + (r.from_version ? " (from v" + r.from_version + ")" : ""));
      td(tr, r.state, "state"); td(tr, (r.stage + 1) + " / " + r.stages.length);
      td(tr, Object.entries(r.devices_by_state).map(([k, n]) => k + " " + n).join(", "));
      const last = td(tr, r.last_decision ? r.last_decision.action + ": " + r.last_decision.reason : "–", "clip");
      last.title = last.textContent;  // the list stays one line a rollout; the detail below has the reason in full
      td(tr, new Date(r.updated_ms).toLocaleTimeString());
      tr.addEventListener("click", () => { selected = r.rollout_id; history.replaceState(null, "", "?id=" + selected); drawList(); detail(); });
      return tr;
    }));
  }

  async function detail() {
    if (!selected) return;
    let r;
    try { r = await EF.api("/api/rollouts/" + encodeURIComponent(selected)); } catch (e) { EF.say(e.message, "error"); return; }
    document.getElementById("detail").hidden = false;
    document.getElementById("d-title").textContent = "Rollout " + r.rollout_id + ": " + r.model + " v" + r.version + " to " + r.group;
    const st = document.getElementById("d-state");
    st.textContent = "state: " + r.state; st.className = "pill" + (r.state === "running" ? " ok" : ["aborted", "rolled_back", "failed"].includes(r.state) ? " bad" : "");
    document.getElementById("d-stages").replaceChildren(...r.stages.map((s) => {
      const d = document.createElement("div"); d.className = s.state; d.dataset.state = s.state;
      d.textContent = "stage " + (s.index + 1) + ": " + Math.round(s.share * 100) + "% (" + s.devices + " assigned) " + s.state;
      return d;
    }));
    document.getElementById("d-devices").textContent = "devices: " + (Object.entries(r.devices_by_state).map(([k, n]) => k + " " + n).join(", ") || "none yet");
    lastDecision(r);
    stageStates(r);
    gatePlots(r.gates);
    document.querySelector("#gates tbody").replaceChildren(...r.gates.map((g) => {
      const tr = document.createElement("tr"); tr.dataset.gate = g.name;
      td(tr, g.name); td(tr, g.metric); td(tr, g.op + " " + g.threshold);
      td(tr, fig(g.canary), "num canary"); td(tr, fig(g.control), "num control"); td(tr, g.verdict || "–", g.verdict || "");
      return tr;
    }));
    document.querySelector("#decisions tbody").replaceChildren(...r.decisions.slice().reverse().map((d) => {
      const tr = document.createElement("tr");
      td(tr, new Date(d.ts_ms).toLocaleTimeString()); td(tr, d.stage === null ? "–" : String(d.stage + 1));
      td(tr, d.action); td(tr, d.reason, "reason"); td(tr, d.by || "controller");
      return tr;
    }));
    const active = ["running", "paused", "holding"].includes(r.state);
    document.querySelectorAll("#detail button.act").forEach((b) => {
      if (EF.me.role === "operator") b.disabled = !active;
    });
  }

  // The last decision and its reason in full, wrapped to the page (a verdict's reason names every gate), and the
  // controller's latest verdict when it says something else (a hold, or what it found before an operator acted).
  function lastDecision(r) {
    const el = document.getElementById("last-decision");
    const d = r.decisions.length ? r.decisions[r.decisions.length - 1] : null;
    el.hidden = !d && !r.last_reason;
    const verdict = d && /fail|roll|abort/.test(d.action) ? " fail" : d && /advance|complete|pass/.test(d.action) ? " pass" : "";
    el.className = "last-decision" + verdict;
    const parts = [];
    const line = (title, text, cls) => {
      const p = document.createElement("div"); p.className = cls;
      const head = document.createElement("strong"); head.textContent = title + ": ";
      const span = document.createElement("span"); span.className = "reason"; span.textContent = text || "–";
      p.append(head, span); parts.push(p);
    };
    if (d) line("Last decision (" + d.action + (d.stage === null ? "" : ", stage " + (d.stage + 1)) + ", "
      + (d.by ? "by " + d.by + ", " : "") + new Date(d.ts_ms).toLocaleTimeString() + ")", d.reason, "decision");
    if (r.last_reason && (!d || r.last_reason !== d.reason)) line("Controller's latest verdict", r.last_reason, "verdict");
    el.replaceChildren(...parts);
  }

  // Devices per state per stage, as Mender and hawkBit show a deployment's progress.
  function stageStates(r) {
    const states = [...new Set(r.stages.flatMap((s) => Object.keys(s.by_state || {})))].sort();
    const head = document.createElement("tr");
    for (const h of ["Stage", "Share", "Progress", ...states, "Selected"]) { const th = document.createElement("th"); th.textContent = h; head.appendChild(th); }
    document.querySelector("#stage-states thead").replaceChildren(head);
    document.querySelector("#stage-states tbody").replaceChildren(...r.stages.map((s) => {
      const tr = document.createElement("tr"); tr.dataset.stage = String(s.index + 1); tr.dataset.state = s.state;
      const by = s.by_state || {};
      td(tr, (s.index + 1) + (s.name ? " " + s.name : "")); td(tr, Math.round(s.share * 100) + "%"); td(tr, s.state, "stage-state");
      for (const k of states) { const c = td(tr, String(by[k] || 0), "num"); c.dataset.state = k; }
      td(tr, String(Object.values(by).reduce((a, b) => a + b, 0)), "num");
      return tr;
    }));
  }

  // Each gate's distribution: one dot per device, canary against control, with each cohort's median.
  const NS = "http://www.w3.org/2000/svg";
  function el(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function median(xs) { if (!xs.length) return null; const s = xs.slice().sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; }
  function gatePlots(gates) {
    document.getElementById("gate-plots").replaceChildren(...gates.map((g) => {
      const box = document.createElement("div"); box.className = "gate-plot"; box.dataset.gate = g.name;
      const h = document.createElement("h3"); h.textContent = g.name + (g.verdict ? " — " + g.verdict : ""); box.appendChild(h);
      const perDevice = (g.canary_values || []).length + (g.control_values || []).length > 0;
      const rows = perDevice ? [["canary", g.canary_values || [], "#6a1b9a"], ["control", g.control_values || [], "#00695c"]]
        : [["canary", g.canary === null ? [] : [g.canary], "#6a1b9a"], ["control", g.control === null ? [] : [g.control], "#00695c"]];
      const all = rows.flatMap((r) => r[1]);
      const W = 340, H = 86, L = 84, R = 10;
      const svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": g.name + ": canary vs control" });
      if (!all.length) {
        svg.appendChild(el("text", { x: 8, y: 40, fill: "#666", "font-size": 12 }, "no data yet"));
      } else {
        let lo = Math.min(...all), hi = Math.max(...all);
        if (hi === lo) { lo -= Math.abs(lo) * 0.1 + 1e-9; hi += Math.abs(hi) * 0.1 + 1e-9; }
        const x = (v) => L + (W - L - R) * (v - lo) / (hi - lo);
        rows.forEach(([name, vals, color], i) => {
          const y = 20 + i * 28;
          svg.appendChild(el("text", { x: 4, y: y + 4, "font-size": 11, fill: color }, name + " (" + vals.length + ")"));
          svg.appendChild(el("line", { x1: L, x2: W - R, y1: y, y2: y, stroke: "#e0e0e0" }));
          vals.forEach((v, j) => svg.appendChild(el("circle", { cx: x(v), cy: y + ((j % 5) - 2) * 2, r: 3, fill: color,
            "fill-opacity": 0.55, class: "dot " + name })));
          const m = median(vals);
          if (m !== null) svg.appendChild(el("line", { x1: x(m), x2: x(m), y1: y - 9, y2: y + 9, stroke: color, "stroke-width": 2 }));
        });
        svg.appendChild(el("text", { x: L, y: H - 4, "font-size": 10, fill: "#666" }, EF.fmt(lo, 3)));
        svg.appendChild(el("text", { x: W - R, y: H - 4, "font-size": 10, fill: "#666", "text-anchor": "end" }, EF.fmt(hi, 3)));
      }
      box.appendChild(svg);
      const note = document.createElement("div"); note.className = "note reason";
      note.textContent = (perDevice ? "one dot per device; bar: median. " : "cohort figures. ") + "Passes when " + g.op + " " + g.threshold
        + (g.detail ? ". " + g.detail : "");
      box.appendChild(note);
      return box;
    }));
  }

  document.querySelectorAll("#detail button.act").forEach((b) => b.addEventListener("click", () => {
    EF.act("/api/rollouts/" + encodeURIComponent(selected) + "/" + b.dataset.action, undefined, detail);
  }));
  document.getElementById("start").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const body = { model: document.getElementById("r-model").value.trim(),
      version: parseInt(document.getElementById("r-version").value, 10),
      group: document.getElementById("r-group").value.trim() };
    EF.act("/api/rollouts", body, (res) => { selected = res.target; detail(); });
  });

  EF.init("Rollouts").then((me) => {
    if (!me) return;
    EF.live("?rows=none", (msg) => {
      if (msg.type === "snapshot") list.clear();
      let touched = false;
      for (const r of msg.rollouts) { list.set(r.rollout_id, r); if (r.rollout_id === selected) touched = true; }
      if (msg.type === "snapshot" || msg.rollouts.length) drawList();
      if (touched) detail();
    });
  });
})();
