// Alerts firing now (live) and the audit log.
"use strict";
(function () {
  function cell(tr, text) { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); }
  function showAlerts(list) {
    document.getElementById("alert-count").textContent = list.length ? list.length + " alerts firing" : "No alerts firing.";
    document.querySelector("#alerts tbody").replaceChildren(...list.map((a) => {
      const tr = document.createElement("tr");
      tr.className = "bad";
      tr.dataset.rule = a.rule; tr.dataset.device = a.device_id;
      cell(tr, new Date(a.since_ms).toLocaleTimeString()); cell(tr, a.rule);
      const td = document.createElement("td"); const link = document.createElement("a");
      link.href = "/devices/" + encodeURIComponent(a.device_id); link.textContent = a.device_id;
      td.appendChild(link); tr.appendChild(td);
      cell(tr, a.message);
      return tr;
    }));
  }
  async function audit() {
    try {
      const entries = await EF.api("/api/audit?limit=100");
      document.querySelector("#audit tbody").replaceChildren(...entries.map((e) => {
        const tr = document.createElement("tr");
        if (!e.ok) tr.className = "bad";
        cell(tr, new Date(e.ts_ms).toLocaleString()); cell(tr, e.user); cell(tr, e.action); cell(tr, e.target);
        cell(tr, (e.ok ? "ok: " : "refused: ") + e.detail);
        return tr;
      }));
    } catch (e) { EF.say(e.message, "error"); }
  }
  EF.init("Alerts").then((me) => {
    if (!me) return;
    EF.live("?rows=none", (msg) => { if (msg.alerts) showAlerts(msg.alerts); });
    audit(); setInterval(audit, 5000);
  });
})();
