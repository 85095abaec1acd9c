"""The FastAPI app: pages, the JSON API (OpenAPI at /api/openapi.json), the live channel and the actions.

Reads go through `FleetReader`, actions through `FleetActions` (dashboards.web.ports). Every action needs the
operator role and, from a browser, the session's CSRF token; every action, refused or not, is written to the
audit log with the user.
"""

# No `from __future__ import annotations`: FastAPI resolves the route signatures, which use local aliases.
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Form, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from dashboards.errors import BadRequest, DashboardError, TryLater, UnknownTarget
from dashboards.web.alerts import Alert
from dashboards.web.auth import CSRF_HEADER, SESSION_COOKIE, Authenticator, Principal, check_csrf
from dashboards.web.config import WebConfig
from dashboards.web.finite import dumps
from dashboards.web.hosts import host_allowed, host_name, relative_location
from dashboards.web.live import DEVICE_ROWS, LiveHub, counts
from dashboards.web.login_throttle import LoginGate, LoginThrottle
from dashboards.web.objects import ObjectBuffer
from dashboards.web.objects_api import object_routes
from dashboards.web.ports import (
    AuditEntry,
    CommandView,
    DeviceDetail,
    DeviceRow,
    EventRow,
    FleetActions,
    FleetReader,
    RolloutAction,
    RolloutView,
    Sample,
    Sent,
)
from dashboards.web.request_origin import RequestOrigin
from dashboards.web.snapshot import SORT_KEYS
from dashboards.web.streams_api import StreamSource, stream_routes
from shared.names import check_ident

STATIC = Path(__file__).parent / "static"
PAGES = {"fleet": "fleet.html", "device": "device.html", "rollouts": "rollouts.html", "alerts": "alerts.html",
         "login": "login.html", "docs": "docs.html"}
# Query bounds: no time after 9999-12-31 and no version beyond 64 bits, so no query can overflow a column.
MAX_MS = 253_402_300_799_999
MAX_VERSION = 2**63 - 1
LOGIN_PATHS_GUARDED = ("/api/openapi.json", "/api/docs")  # the schema and docs are behind sign-in like the API
DEFAULT_PAGE, MAX_PAGE = 500, 5000  # /api/devices: a fleet of any size answers in bounded pages
FLEET_FIRST_PAGE = 100  # rows the fleet page shows per page (fleet.js PAGE)
INITIAL_SLOT = "<!-- initial -->"  # where the fleet page's first data goes in fleet.html
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeployBody(_Body):
    """Deploy one version to one device."""

    version: int = Field(ge=1, description="Model version to serve.")


class RolloutBody(_Body):
    """Start a staged rollout with the default plan."""

    model: str = Field(min_length=1, description="Model name.")
    version: int = Field(ge=1, description="New version.")
    group: str = Field(min_length=1, description="Group to roll out to.")


class ActionResult(BaseModel):
    """What an action did."""

    ok: bool = Field(description="Always true: failures answer with an error status and {'error': ...}.")
    message: str = Field(description="One line saying what happened.")
    target: str = Field(description="Device or rollout id acted on.")
    request_id: str | None = Field(default=None, description="Command sent, for /api/devices/{id}/commands/{rid}.")


class Me(BaseModel):
    """The signed-in principal."""

    name: str = Field(description="User or token name.")
    role: str = Field(description="viewer or operator.")
    csrf: str | None = Field(description="Token to send in X-CSRF-Token with every action (None for API tokens).")
    fleet: str = Field(description="Fleet shown.")


class AlertView(BaseModel):
    """One firing alert."""

    rule: str = Field(description="Rule name.")
    device_id: str = Field(description="Device it fires for.")
    kind: str = Field(description="offline, metric, class or zone.")
    message: str = Field(description="What fires, in words.")
    value: float | None = Field(default=None, description="The figure that fires.")
    threshold: float | None = Field(default=None, description="The rule's threshold.")
    since_ms: int = Field(description="Unix ms when it started firing.")


class _Unauthenticated(DashboardError):
    status_code = 401

    def __init__(self) -> None:
        super().__init__("sign in first (or send Authorization: Bearer <token>)")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _validation_line(exc: RequestValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"bad request: {loc}: {first.get('msg', 'invalid')}{more}"


def _device_id(device_id: str) -> str:
    try:
        return check_ident(device_id, "device id")
    except ValueError as exc:
        raise UnknownTarget(f"no device {device_id!r}: {exc}") from exc


def _printable(text: str) -> str:
    """Request text as the audit log may store it: escaped when it holds control characters or lone surrogates."""
    return text if text.isprintable() else ascii(text)


def _rollout_id(rollout_id: str) -> str:
    """A rollout id that could exist (ro-<hex>), so no made-up id (a NUL, 10 kB) reaches the database."""
    try:
        return check_ident(rollout_id, "rollout id")
    except ValueError as exc:
        raise UnknownTarget(f"no rollout {rollout_id[:80]!r}: {exc}") from exc


def create_app(
    config: WebConfig, reader: FleetReader, actions: FleetActions, hub: LiveHub | None = None,
    clock_ms: Callable[[], int] | None = None, objects: ObjectBuffer | None = None,
    streams: StreamSource | None = None,
) -> FastAPI:
    """The web app over one fleet; the hub starts and stops with the app; objects: a detector's snapshots, object
    events and zone counts for the device page (dashboards.web.objects_api); streams: each device's per-stream
    figures (dashboards.web.streams_api)."""
    now_ms = clock_ms or (lambda: int(time.time() * 1000))
    objects = objects if objects is not None else ObjectBuffer(known=lambda _device: False)  # reads answer "none"
    auth = Authenticator(config)
    throttle = LoginThrottle(config.login, clock=lambda: now_ms() / 1000)
    gate = LoginGate(config.login.max_concurrent)
    origin = RequestOrigin(config.trusted_proxies)
    served_hosts = config.served_hosts()
    live = hub or LiveHub(reader, config.live_interval_s, config.alerts, clock_ms=now_ms, objects=objects)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await live.start()
        try:
            yield
        finally:
            await live.stop()

    app = FastAPI(title="edgeferry fleet", version="1", openapi_url="/api/openapi.json", docs_url=None,
                  redoc_url=None, lifespan=lifespan)  # docs: our own page over the vendored Swagger UI (/api/docs)
    app.state.hub = live
    app.state.auth = auth

    @app.exception_handler(DashboardError)
    async def _dashboard_error(_: Request, exc: DashboardError) -> JSONResponse:
        response = _error(exc.status_code, str(exc))
        if isinstance(exc, TryLater):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.exception_handler(RequestValidationError)
    async def _bad_body(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, _validation_line(exc))

    @app.middleware("http")
    async def _guard(request: Request, call_next: Callable[[Request], Any]) -> Response:
        # Only configured hosts: a made-up Host header gets 400, and no Location ever names another host.
        host = request.headers.get("host")
        if not host_allowed(host, served_hosts):
            return _error(400, f"host {host_name(host) or '(none)'!r} is not served here: add it to the web "
                               "config's allowed_hosts (or set public_url)")
        path = request.url.path
        if path.startswith(LOGIN_PATHS_GUARDED) and principal_of(request) is None:
            if path.startswith("/api/docs"):
                return RedirectResponse("/login", status_code=303)
            return _error(401, str(_Unauthenticated()))
        response: Response = await call_next(request)
        location = response.headers.get("location")
        if location is not None:
            response.headers["location"] = relative_location(location)
        return response

    @app.middleware("http")
    async def _headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    def principal_of(request: Request) -> Principal | None:
        return auth.token(request.headers.get("authorization")) or auth.session(request.cookies.get(SESSION_COOKIE))

    def who(request: Request) -> Principal:
        p = principal_of(request)
        if p is None:
            raise _Unauthenticated()
        return p

    User = Annotated[Principal, Depends(who)]

    def act(p: Principal, csrf: str | None, action: str, target: str, fn: Callable[[], str]) -> ActionResult:
        try:
            p.require_operator(action)
            check_csrf(p, csrf)
            message = fn()
        except DashboardError as exc:
            actions.audit(p.name, action, _printable(target), False, str(exc))
            raise
        actions.audit(p.name, action, _printable(target), True, message)
        return ActionResult(ok=True, message=message, target=target)

    # ---- pages -------------------------------------------------------------------------------------------------
    def page(request: Request, name: str) -> Response:
        if principal_of(request) is None:
            return RedirectResponse("/login", status_code=303)
        return FileResponse(STATIC / PAGES[name], headers={"Cache-Control": "no-store"})

    fleet_html = (STATIC / PAGES["fleet"]).read_text()

    @app.get("/", include_in_schema=False)
    def fleet_page(request: Request) -> Response:
        # The page arrives with who is signed in, the summary and its first page of devices, so its first paint
        # needs no further round trip to a server that may be busy with ingest.
        p = principal_of(request)
        if p is None:
            return RedirectResponse("/login", status_code=303)
        snap = live.snapshot
        total, rows = snap.page(0, FLEET_FIRST_PAGE)
        initial = {"me": me(p).model_dump(mode="json"), "summary": snap.summary(),
                   "page": {"offset": 0, "limit": FLEET_FIRST_PAGE, "sort": "severity", "total": total, "rows": rows}}
        html = fleet_html.replace(INITIAL_SLOT, f'<script type="application/json" id="initial">{embedded(initial)}'
                                                "</script>", 1)
        return Response(html, media_type="text/html", headers={"Cache-Control": "no-store"})

    @app.get("/devices/{device_id}", include_in_schema=False)
    def device_page(request: Request, device_id: str) -> Response:
        return page(request, "device")

    @app.get("/rollouts", include_in_schema=False)
    def rollouts_page(request: Request) -> Response:
        return page(request, "rollouts")

    @app.get("/alerts", include_in_schema=False)
    def alerts_page(request: Request) -> Response:
        return page(request, "alerts")

    @app.get("/api/docs", include_in_schema=False)
    def docs_page(request: Request) -> Response:
        return page(request, "docs")

    @app.get("/login", include_in_schema=False)
    def login_page() -> Response:
        return FileResponse(STATIC / PAGES["login"])

    def peer(request: Request) -> str | None:
        return request.client.host if request.client else None

    def secure_cookie(request: Request) -> bool:
        if config.secure_cookies == "auto":
            return origin.is_https(request.url.scheme, peer(request), request.headers)
        return config.secure_cookies

    @app.post("/login", include_in_schema=False)
    async def login(request: Request, username: Annotated[str, Form(max_length=256)],
                    password: Annotated[str, Form(max_length=4096)]) -> Response:
        # Throttled per user name and per address; at most login.max_concurrent password checks run at once, off
        # the event loop, so guessers neither queue up memory nor slow a signed-in operator's requests.
        address = origin.client_address(peer(request), request.headers)
        refused = throttle.check(username, address)
        if refused is not None:
            raise TryLater(refused.message, refused.retry_after_s)
        if not gate.try_enter():
            raise TryLater("too many sign-ins at once; try again in 1 s", 1, status_code=503)
        try:
            sid = await run_in_threadpool(auth.login, username, password)
        finally:
            gate.leave()
        if sid is None:
            limits = config.login
            for lock in throttle.failed(username, address):
                limit = limits.max_failures_per_user if lock.scope == "user" else limits.max_failures_per_address
                await run_in_threadpool(
                    actions.audit, _printable(username)[:64], "login.throttled",
                    _printable(f"{lock.scope} {lock.key}"), False,
                    f"{limit} failed sign-ins within {limits.window_s:g} s (the last from {_printable(address)}); "
                    f"sign-in refused for {lock.retry_after_s} s")
            return RedirectResponse("/login?failed=1", status_code=303)
        throttle.succeeded(username)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="strict", secure=secure_cookie(request),
                            max_age=int(config.session_ttl_s), path="/")
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, csrf_field: Annotated[str | None, Form(alias="csrf")] = None,
               csrf_header: Annotated[str | None, Header(alias=CSRF_HEADER)] = None) -> Response:
        """Ends the session; like every other change, only with the session's CSRF token (form field or header)."""
        sid = request.cookies.get(SESSION_COOKIE)
        signed_in = auth.session(sid)
        if sid and signed_in is not None:
            check_csrf(signed_in, csrf_header or csrf_field)
            auth.logout(sid)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # ---- reads -------------------------------------------------------------------------------------------------
    @app.get("/api/me", response_model=Me, tags=["auth"])
    def me(p: User) -> Me:
        """Who is signed in, and the CSRF token actions must carry."""
        return Me(name=p.name, role=p.role, csrf=p.csrf, fleet=reader.fleet_name())

    @app.get("/api/devices", response_model=list[DeviceRow], tags=["registry"], responses={200: {"headers": {
        "X-Total-Count": {"description": "Devices matching the filters, over all pages.",
                          "schema": {"type": "integer"}}}}})
    def devices(
        p: User, response: Response,
        status: Annotated[str | None, Query(max_length=64, description="Only this status.")] = None,
        group: Annotated[str | None, Query(max_length=64, description="Only devices in this group.")] = None,
        version: Annotated[int | None, Query(ge=0, le=MAX_VERSION,
                                             description="Only devices serving this version.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Devices per page.")] = DEFAULT_PAGE,
        offset: Annotated[int, Query(ge=0, le=2**31, description="Devices to skip (by device id).")] = 0,
    ) -> list[DeviceRow]:
        """One page of devices (by id) with their current figures; X-Total-Count has how many match in all."""
        rows = sorted((r for r in reader.devices() if (status is None or r.status == status)
                       and (group is None or group in r.groups) and (version is None or r.model_version == version)),
                      key=lambda r: r.device_id)
        response.headers["X-Total-Count"] = str(len(rows))
        return rows[offset:offset + limit]

    @app.get("/api/fleet/summary", tags=["registry"])
    def fleet_summary(p: User) -> JSONResponse:
        """Counts by status, condition, version, group, cohort and convergence, and the status counts over time:
        computed once per live tick and shared by every client."""
        return JSONResponse(live.snapshot.summary(), headers={"Cache-Control": "no-store"})

    @app.get("/api/fleet/devices", tags=["registry"], responses={200: {"headers": {
        "X-Total-Count": {"description": "Devices matching the filters, over all pages.",
                          "schema": {"type": "integer"}},
        "X-Generated-Ms": {"description": "Unix ms of the live tick the rows are from.",
                           "schema": {"type": "integer"}},
    }}})
    def fleet_devices(
        p: User,
        sort: Annotated[str, Query(max_length=32, description="severity (worst first: misbehaving, offline, stale, "
                                                              "unknown, stopped, updating, ok) or a row field.")
                        ] = "severity",
        desc: Annotated[bool, Query(description="Reverse the order.")] = False,
        q: Annotated[str, Query(max_length=128, description="Text in id, groups, model, backend, variant.")] = "",
        status: Annotated[str | None, Query(max_length=32, description="A status or condition (misbehaving, "
                                                                       "updating).")] = None,
        group: Annotated[str | None, Query(max_length=64, description="Only devices in this group.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Devices per page.")] = 100,
        offset: Annotated[int, Query(ge=0, le=2**31, description="Devices to skip.")] = 0,
    ) -> JSONResponse:
        """The fleet page's table: one page of the last live tick's rows (each with its condition), sorted by
        severity unless asked otherwise; no registry read, so any number of browsers costs one read per tick."""
        if sort not in SORT_KEYS:
            raise BadRequest(f"bad request: sort must be one of {', '.join(sorted(SORT_KEYS))}; got {sort[:32]!r}")
        snap = live.snapshot
        total, rows = snap.page(offset, limit, sort, desc, q, status, group)
        return JSONResponse(rows, headers={"X-Total-Count": str(total), "X-Generated-Ms": str(snap.generated_ms),
                                           "Cache-Control": "no-store"})

    @app.get("/api/counts", tags=["registry"])
    def device_counts(p: User) -> dict[str, dict[str, int]]:
        """Devices by status and by model version."""
        return counts(reader.devices())

    @app.get("/api/devices/{device_id}", response_model=DeviceDetail, tags=["registry"])
    def device(p: User, device_id: str) -> DeviceDetail:
        """One device's row and retained state."""
        found = reader.device(_device_id(device_id))
        if found is None:
            raise UnknownTarget(f"no device {device_id!r} in fleet {reader.fleet_name()!r}")
        return found

    @app.get("/api/devices/{device_id}/history", response_model=list[Sample], tags=["history"])
    def history(
        p: User, device_id: str,
        since_ms: Annotated[int | None, Query(ge=0, le=MAX_MS,
                                              description="Start, Unix ms (default: history_s ago).")] = None,
        until_ms: Annotated[int | None, Query(ge=0, le=MAX_MS, description="End, Unix ms (default: now).")] = None,
    ) -> list[Sample]:
        """The kept telemetry history of a device."""
        device(p, device_id)
        end = until_ms if until_ms is not None else now_ms()
        start = since_ms if since_ms is not None else max(0, end - int(config.history_s * 1000))
        if start > end:
            raise BadRequest(f"bad request: since_ms ({start}) is after until_ms ({end})")
        return reader.history(device_id, start, end)

    @app.get("/api/devices/{device_id}/events", response_model=list[EventRow], tags=["history"])
    def events(
        p: User, device_id: str, limit: Annotated[int, Query(ge=1, le=500)] = 50,
        collapsed: Annotated[bool, Query(description="Each run of per-frame update/frame rows as one row (latest, "
                                                     "with its count); new and end rows all kept.")] = False,
    ) -> list[EventRow]:
        """The device's latest results, newest first."""
        device(p, device_id)
        return reader.events(device_id, 0, limit, collapsed)

    @app.get("/api/rollouts", response_model=list[RolloutView], tags=["rollouts"])
    def rollouts(p: User) -> list[RolloutView]:
        """Current and past rollouts, newest first."""
        return reader.rollouts()

    @app.get("/api/rollouts/{rollout_id}", response_model=RolloutView, tags=["rollouts"])
    def rollout(p: User, rollout_id: str) -> RolloutView:
        """One rollout with its stages, gate figures and every decision."""
        found = reader.rollout(_rollout_id(rollout_id))
        if found is None:
            raise UnknownTarget(f"no rollout {rollout_id!r}")
        return found

    @app.get("/api/alerts", response_model=list[AlertView], tags=["alerts"])
    def alerts(p: User) -> list[AlertView]:
        """Alerts firing now."""
        return [AlertView(**_alert_fields(a)) for a in live.alerts()]

    @app.get("/api/audit", response_model=list[AuditEntry], tags=["audit"])
    def audit(p: User, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[AuditEntry]:
        """The latest actions and who took them."""
        return reader.audit_log(limit)

    @app.get("/api/live", tags=["live"], response_class=StreamingResponse)
    async def live_stream(
        p: User, device: Annotated[str | None, Query(description="Also stream this device's new samples.")] = None,
        since_ms: Annotated[int | None, Query(ge=0, le=MAX_MS, description="Samples after this Unix ms.")] = None,
        rows: Annotated[Literal["all", "none", "device"], Query(
            description="Device rows carried: all; none (the fleet summary instead); device (only that device's)."
        )] = "all",
    ) -> StreamingResponse:
        """Server-sent events: a snapshot, then one batch of changed rows per interval."""
        if device is not None:
            _device_id(device)
        if rows == "device" and device is None:
            raise BadRequest("bad request: rows=device needs device=<id>")
        shape = DEVICE_ROWS + device if rows == "device" and device is not None else rows
        return StreamingResponse(live.stream(device, since_ms, shape), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # ---- actions -----------------------------------------------------------------------------------------------
    Csrf = Annotated[str | None, Header(alias=CSRF_HEADER, include_in_schema=True)]

    def known_device(device_id: str) -> str:
        device_id = _device_id(device_id)
        if reader.device(device_id) is None:
            raise UnknownTarget(f"no device {device_id!r} in fleet {reader.fleet_name()!r}")
        return device_id

    @app.post("/api/devices/{device_id}/ping", response_model=ActionResult, tags=["actions"])
    def ping(p: User, device_id: str, csrf: Csrf = None) -> ActionResult:
        """Send a signed ping."""
        sent: list[Sent] = []

        def run() -> str:
            sent.append(actions.ping(known_device(device_id)))
            return sent[0].message

        result = act(p, csrf, "ping", device_id, run)
        return result.model_copy(update={"request_id": sent[0].request_id})

    @app.get("/api/devices/{device_id}/commands/{request_id}", response_model=CommandView, tags=["actions"])
    def command(p: User, device_id: str, request_id: str) -> CommandView:
        """A command sent to the device (a ping, a deploy) and its reply: waiting, replied or timed out."""
        found = reader.command(_device_id(device_id), request_id[:64])
        if found is None:
            raise UnknownTarget(f"no command {request_id[:64]!r} sent to {device_id!r}")
        return found

    @app.post("/api/devices/{device_id}/deploy", response_model=ActionResult, tags=["actions"])
    def deploy(p: User, device_id: str, body: DeployBody, csrf: Csrf = None) -> ActionResult:
        """Deploy a version to one device (no staging)."""
        return act(p, csrf, "deploy", device_id, lambda: actions.deploy(known_device(device_id), body.version))

    @app.post("/api/devices/{device_id}/rollback", response_model=ActionResult, tags=["actions"])
    def rollback(p: User, device_id: str, csrf: Csrf = None) -> ActionResult:
        """Return the device to its previous installed version."""
        return act(p, csrf, "rollback", device_id, lambda: actions.rollback(known_device(device_id)))

    @app.delete("/api/devices/{device_id}", response_model=ActionResult, tags=["actions"])
    def remove_device(p: User, device_id: str, csrf: Csrf = None) -> ActionResult:
        """Forget a device (registry record and retained topics); it comes back if it publishes again."""
        def run() -> str:
            message = actions.remove(known_device(device_id))
            objects.forget(device_id)  # its snapshot, object events and zone counts too
            return message

        return act(p, csrf, "device.remove", device_id, run)

    @app.post("/api/rollouts", response_model=ActionResult, tags=["actions"])
    def start_rollout(p: User, body: RolloutBody, csrf: Csrf = None) -> ActionResult:
        """Start a staged rollout of a version to a group."""
        target = f"{body.group}:{body.model}:v{body.version}"
        started: list[str] = []

        def run() -> str:
            started.append(actions.start_rollout(body.model, body.version, body.group))
            return f"rollout {started[0]} started: {body.model} v{body.version} to group {body.group}"

        result = act(p, csrf, "rollout.start", target, run)
        return result.model_copy(update={"target": started[0]})

    @app.post("/api/rollouts/{rollout_id}/{action}", response_model=ActionResult, tags=["actions"])
    def rollout_action(p: User, rollout_id: str, action: Literal["pause", "resume", "promote", "abort"],
                       csrf: Csrf = None) -> ActionResult:
        """Pause, resume, promote (skip to the next stage) or abort a rollout."""
        chosen: RolloutAction = action

        def run() -> str:
            if reader.rollout(_rollout_id(rollout_id)) is None:
                raise UnknownTarget(f"no rollout {rollout_id!r}")
            return actions.rollout_action(rollout_id, chosen, p.name)

        return act(p, csrf, f"rollout.{action}", rollout_id, run)

    app.include_router(object_routes(objects, who, known_device))
    app.include_router(stream_routes(streams or (lambda _device: None), who, known_device))
    return app


def embedded(data: Any) -> str:
    """JSON safe inside an HTML <script type="application/json"> block: no '<', '>' or '&' a device id could carry."""
    text, _ = dumps(data)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _alert_fields(a: Alert) -> dict[str, Any]:
    return a.as_json()
