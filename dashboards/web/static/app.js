// Shared by every page: who is signed in, the API with its CSRF token, the message banner, the header.
"use strict";
const EF = {
  me: null,
  async init(here, known) {
    if (known) EF.me = known;  // the page came with it (the fleet page)
    else {
      const r = await fetch("/api/me", { credentials: "same-origin" });
      if (r.status === 401) { location.href = "/login"; return null; }
      EF.me = await r.json();
    }
    const nav = document.querySelector("header");
    nav.innerHTML = "";
    const title = document.createElement("strong");
    title.textContent = "edgeferry · " + EF.me.fleet;
    nav.appendChild(title);
    for (const [href, name] of [["/", "Fleet"], ["/rollouts", "Rollouts"], ["/alerts", "Alerts"]]) {
      const a = document.createElement("a");
      a.href = href; a.textContent = name;
      if (name === here) a.className = "here";
      nav.appendChild(a);
    }
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = EF.me.name + " (" + EF.me.role + ") ";
    const out = document.createElement("form");
    out.method = "post"; out.action = "/logout";
    const token = document.createElement("input");  // sign-out changes state, so it carries the CSRF token too
    token.type = "hidden"; token.name = "csrf"; token.value = EF.me.csrf || "";
    out.appendChild(token);
    const b = document.createElement("button"); b.textContent = "Sign out"; out.appendChild(b);
    who.appendChild(out);
    nav.appendChild(who);
    if (EF.me.role !== "operator") {
      document.querySelectorAll("button.act").forEach((el) => { el.disabled = true; el.title = "needs the operator role"; });
      document.querySelectorAll(".viewer-note").forEach((el) => { el.hidden = false; });
    }
    return EF.me;
  },
  async api(path, method, body) {
    const opts = { method: method || "GET", credentials: "same-origin", headers: {} };
    if (method && method !== "GET") opts.headers["X-CSRF-Token"] = EF.me ? EF.me.csrf : "";
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    const r = await fetch(path, opts);
    let data = null;
    try { data = await r.json(); } catch (e) { data = { error: r.status + " " + r.statusText }; }
    if (!r.ok) throw new Error((data && data.error) || (r.status + " " + r.statusText));
    return data;
  },
  async act(path, body, after) {
    try {
      const res = await EF.api(path, "POST", body);
      EF.say(res.message, "info");
      if (after) after(res);
    } catch (e) { EF.say(e.message, "error"); }
  },
  say(text, kind) {
    const el = document.getElementById("msg");
    el.textContent = text; el.className = kind;
  },
  live(query, onMessage) {
    const es = new EventSource("/api/live" + (query || ""));
    es.onmessage = (ev) => onMessage(JSON.parse(ev.data));
    return es;
  },
  fmt(v, digits) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "number") return v.toFixed(digits === undefined ? 1 : digits);
    return String(v);
  },
  ago(ms) {
    if (!ms) return "never";
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 120) return s + " s ago";
    if (s < 7200) return Math.round(s / 60) + " min ago";
    return Math.round(s / 3600) + " h ago";
  },
  BAD: new Set(["offline", "stale"]),
  // The control plane refused (malformed, out of range) or shed (flooding) some of its messages.
  misbehaving(d) { return (d.refused || 0) > 0 || (d.shed || 0) > 0; },
};
