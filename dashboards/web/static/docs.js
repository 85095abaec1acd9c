// The API docs from the vendored Swagger UI (no CDN: the page works offline under the app's CSP). "Try it out"
// runs as the signed-in user, with the session's CSRF token on actions.
"use strict";
(async function () {
  let csrf = null;
  try {
    const r = await fetch("/api/me", { credentials: "same-origin" });
    if (r.ok) csrf = (await r.json()).csrf;
  } catch (e) { /* the docs still render; actions answer 401/403 */ }
  window.ui = SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    requestInterceptor: (req) => {
      if (csrf && req.method && req.method !== "GET") req.headers["X-CSRF-Token"] = csrf;
      return req;
    },
  });
})();
