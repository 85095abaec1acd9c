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
      td(tr, r.last_decision ? r.last_decision.action + ": " + r.last_decision.reason : "–");
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
    document.querySelector("#gates tbody").replaceChildren(...r.gates.map((g) => {
      const tr = document.createElement("tr"); tr.dataset.gate = g.name;
      td(tr, g.name); td(tr, g.metric); td(tr, g.op + " " + g.threshold);
      td(tr, fig(g.canary), "num canary"); td(tr, fig(g.control), "num control"); td(tr, g.verdict || "–", g.verdict || "");
      return tr;
    }));
    document.querySelector("#decisions tbody").replaceChildren(...r.decisions.slice().reverse().map((d) => {
      const tr = document.createElement("tr");
      td(tr, new Date(d.ts_ms).toLocaleTimeString()); td(tr, d.stage === null ? "–" : String(d.stage + 1));
      td(tr, d.action); td(tr, d.reason); td(tr, d.by || "controller");
      return tr;
    }));
    const active = ["running", "paused", "holding"].includes(r.state);
    document.querySelectorAll("#detail button.act").forEach((b) => {
      if (EF.me.role === "operator") b.disabled = !active;
    });
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
    EF.live("", (msg) => {
      if (msg.type === "snapshot") list.clear();
      let touched = false;
      for (const r of msg.rollouts) { list.set(r.rollout_id, r); if (r.rollout_id === selected) touched = true; }
      if (msg.type === "snapshot" || msg.rollouts.length) drawList();
      if (touched) detail();
    });
  });
})();
