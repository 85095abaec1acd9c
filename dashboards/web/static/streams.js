// A multi-stream agent's side of the device page: one row per stream (camera, sensor) with its latest figures
// (capture and processed fps, skipped and stale frames, errors, the version of the model serving it, queue age and
// e2e percentiles), so a stalled camera stands out among the others. Built here and placed after the charts;
// absent for a single-stream agent.
"use strict";
(function () {
  const id = decodeURIComponent(location.pathname.split("/").pop());
  const url = "/api/devices/" + encodeURIComponent(id) + "/streams";
  const POLL_MS = 3000;
  let section = null, timer = null;
  EF.streams = { shown: [] };

  function build(columns) {
    section = document.createElement("section");
    section.id = "streams";
    const h = document.createElement("h2");
    h.textContent = "Streams";
    const note = document.createElement("p");
    note.className = "note";
    note.id = "streams-note";
    const table = document.createElement("table");
    table.id = "stream-table";
    const tr = document.createElement("tr");
    for (const t of ["Stream", ...columns.map((c) => c.title + (c.unit && c.unit !== "frames" ? " (" + c.unit + ")"
      : ""))]) {
      const th = document.createElement("th"); th.textContent = t; tr.appendChild(th);
    }
    const head = document.createElement("thead"); head.appendChild(tr);
    table.append(head, document.createElement("tbody"));
    section.append(h, note, table);
    const charts = document.querySelector(".charts");
    if (charts) charts.after(section); else document.querySelector("main").appendChild(section);
  }

  function cell(c, v) {
    if (v === undefined || v === null) return "–";
    if (c.name === "connected") return v >= 1 ? "yes" : "no";
    if (c.name === "model_version") return v >= 1 ? "v" + Math.round(v) : "–";  // 0: no model serves it yet
    return c.kind === "counter" || c.value_type === "int" ? String(Math.round(v)) : EF.fmt(v, 1);
  }

  function show(view) {
    if (!view.streams.length) return;
    if (!section) build(view.columns);
    const rows = view.streams.map((s) => {
      const tr = document.createElement("tr");
      tr.dataset.stream = s.name;
      if (s.figures.connected === 0) tr.className = "bad";
      const name = document.createElement("td"); name.textContent = s.name; tr.appendChild(name);
      for (const c of view.columns) {
        const td = document.createElement("td"); td.dataset.figure = c.name; td.textContent = cell(c, s.figures[c.name]);
        tr.appendChild(td);
      }
      return tr;
    });
    section.querySelector("tbody").replaceChildren(...rows);
    const when = new Date(view.received_ms).toLocaleTimeString();
    section.querySelector("#streams-note").textContent = view.streams.length + " stream(s), as reported at " + when
      + (view.dropped ? "; " + view.dropped + " more left out (the fleet keeps 32 per device)" : "");
    EF.streams.shown = view.streams.map((s) => s.name);
  }

  // Only once device.js has shown the device: an unknown one (a 404 there) is never asked about again here.
  function known() { return document.getElementById("title").textContent === "Device " + id; }

  async function poll() {
    if (!known()) return;
    try {
      show(await EF.api(url));
    } catch (err) {
      if (/^no device/.test(err.message)) clearInterval(timer);  // removed or unknown: nothing more to show
    }
  }

  poll();
  timer = setInterval(poll, POLL_MS);
  document.addEventListener("ef:device-removed", () => clearInterval(timer));
})();
