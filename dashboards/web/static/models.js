// The device page's models when a multi-stream agent serves more than one (its config's `models:`): the main one
// (sync.model, which the fleet deploys) and each further one with its version, precision, backend and the streams it
// serves, so an operator sees which camera runs which model. Filled from the device read device.js announces
// (ef:device); hidden while the device serves a single model.
"use strict";
(function () {
  EF.models = { shown: [] };

  function backend(m) {
    if (!m.backend) return "–";
    return m.device ? m.backend + " (" + m.device + ")" : m.backend;
  }

  // A model that lists no streams serves every stream (or the single source).
  function streams(m) {
    return Array.isArray(m.streams) && m.streams.length ? m.streams.join(", ") : "every stream";
  }

  function row(m) {
    const tr = document.createElement("tr");
    tr.dataset.model = m.name || "";
    const cells = [["name", m.name || "–"], ["version", m.version ? "v" + m.version : "–"],
      ["precision", m.precision || "–"], ["backend", backend(m)], ["streams", streams(m)]];
    for (const [col, text] of cells) {
      const td = document.createElement("td"); td.dataset.col = col; td.textContent = text; tr.appendChild(td);
    }
    return tr;
  }

  function show(state) {
    const section = document.getElementById("models");
    const further = state && Array.isArray(state.models) ? state.models : [];
    if (!section) return;
    if (!further.length) {
      section.hidden = true;
      EF.models.shown = [];
      return;
    }
    const main = state.model || {};
    const rows = [row(main), ...further.map(row)];
    rows[0].title = "sync.model: the model the fleet's desired state and rollouts move";
    section.querySelector("tbody").replaceChildren(...rows);
    section.hidden = false;
    EF.models.shown = [main.name, ...further.map((m) => m.name)];
  }

  document.addEventListener("ef:device", (e) => show(e.detail.state));
})();
