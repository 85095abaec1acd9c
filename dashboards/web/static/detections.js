// A detector's side of the device page: what is it seeing now. The latest object snapshot with its box and label
// drawn over the JPEG, objects per zone over time, and the object events (new/update/end). Hidden for a device that
// never sent any of them (a classifier).
"use strict";
(function () {
  const id = decodeURIComponent(location.pathname.split("/").pop());
  const base = "/api/devices/" + encodeURIComponent(id) + "/objects";
  const POLL_MS = 3000, MAX_W = 480, MAX_H = 320, MAX_SCALE = 6;
  const BOX = "#ff1744";
  const COLORS = ["#3949ab", "#00897b", "#f4511e", "#8e24aa", "#6d4c41", "#c0ca33", "#000000", "#039be5"];
  const section = document.getElementById("detections");
  let shown = null, plot = null, keys = "", timer = null;
  EF.detections = { drawn: null };

  function reveal() { section.hidden = false; }

  // The snapshot is a crop of the frame scaled to the JPEG's size: the box (frame pixels) is moved into the crop,
  // scaled to the JPEG, then to the canvas.
  function draw(s) {
    if (!s || (shown && shown.object_id === s.object_id && shown.ts_ms === s.ts_ms)) return;
    shown = s;
    reveal();
    const img = new Image();
    img.onload = () => {
      const canvas = document.getElementById("snapshot");
      const scale = Math.min(MAX_W / s.width, MAX_H / s.height, MAX_SCALE);
      canvas.width = Math.max(1, Math.round(s.width * scale));
      canvas.height = Math.max(1, Math.round(s.height * scale));
      const ctx = canvas.getContext("2d");
      ctx.imageSmoothingEnabled = scale < 2;
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
      const cw = Math.max(1e-6, s.crop[2] - s.crop[0]), ch = Math.max(1e-6, s.crop[3] - s.crop[1]);
      const kx = canvas.width / cw, ky = canvas.height / ch;
      const x1 = (s.box[0] - s.crop[0]) * kx, y1 = (s.box[1] - s.crop[1]) * ky;
      const x2 = (s.box[2] - s.crop[0]) * kx, y2 = (s.box[3] - s.crop[1]) * ky;
      ctx.strokeStyle = BOX; ctx.lineWidth = 2;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      const text = s.label + " " + Math.round(s.score * 100) + "%";
      ctx.font = "bold 13px system-ui, sans-serif";
      const tw = ctx.measureText(text).width + 8;
      const ty = y1 >= 18 ? y1 - 18 : Math.min(canvas.height - 18, Math.max(0, y1));
      ctx.fillStyle = BOX; ctx.fillRect(Math.max(0, x1 - 1), ty, tw, 18);
      ctx.fillStyle = "#fff"; ctx.fillText(text, Math.max(0, x1 - 1) + 4, ty + 13);
      EF.detections.drawn = { object_id: s.object_id, label: text, box: [x1, y1, x2, y2],
        width: canvas.width, height: canvas.height };
      document.getElementById("snapshot-caption").textContent = s.label + " " + s.object_id + ", best frame at "
        + new Date(s.frame_time_ms).toLocaleTimeString() + " (" + s.width + "×" + s.height + " crop)";
    };
    img.src = "data:image/jpeg;base64," + s.jpeg;
  }

  function chart(z) {
    if (!z.ts_ms.length) return;
    reveal();
    const names = Object.keys(z.series).sort((a, b) => (a.includes("/") - b.includes("/")) || (a < b ? -1 : 1));
    const data = [z.ts_ms.map((t) => t / 1000), ...names.map((k) => z.series[k])];
    if (plot && names.join("\n") === keys) { plot.setData(data); return; }
    keys = names.join("\n");
    const stepped = uPlot.paths && uPlot.paths.stepped ? uPlot.paths.stepped({ align: 1 }) : undefined;  // counts jump
    const el = document.getElementById("chart-zones");
    el.replaceChildren();
    plot = new uPlot({
      width: Math.max(420, el.clientWidth || 460), height: 220, scales: { x: { time: true } },
      series: [{}, ...names.map((k, i) => ({ label: k.includes("/") ? k.replace("/", ": ") : k + " (all)",
        stroke: COLORS[i % COLORS.length], width: k.includes("/") ? 1 : 2, dash: k.includes("/") ? [4, 3] : [],
        paths: stepped }))],
      axes: [{}, { size: 45 }],
    }, data, el);
    EF.charts = EF.charts || {};
    EF.charts["chart-zones"] = plot;
  }

  function flags(e) {
    const out = [];
    if (e.stationary) out.push("stationary");
    if (e.loitering) out.push("loitering");
    if (e.has_snapshot) out.push("snapshot");
    return out.join(", ") || "–";
  }

  function events(list) {
    if (!list.length) return;
    reveal();
    document.querySelector("#object-events tbody").replaceChildren(...list.map((e) => {
      const tr = document.createElement("tr");
      tr.dataset.type = e.type; tr.dataset.object = e.object_id;
      for (const t of [new Date(e.ts_ms).toLocaleTimeString(), e.type, e.object_id, e.label, EF.fmt(e.score, 2),
        e.current_zones.join(", ") || "–", flags(e)]) {
        const td = document.createElement("td"); td.textContent = t; tr.appendChild(td);
      }
      return tr;
    }));
  }

  // Only once device.js has shown the device: an unknown one (a 404 there) is never asked about again here.
  function known() { return document.getElementById("title").textContent === "Device " + id; }

  async function poll() {
    if (!known()) return;
    try {
      const [s, z, e] = await Promise.all([EF.api(base + "/snapshot"), EF.api(base + "/zones"),
        EF.api(base + "/events?limit=30")]);
      draw(s); chart(z); events(e);
    } catch (err) {
      if (/^no device/.test(err.message)) clearInterval(timer);  // removed or unknown: nothing more to show
    }
  }

  poll();
  timer = setInterval(poll, POLL_MS);
  document.addEventListener("ef:device-removed", () => clearInterval(timer));
})();
