"""Who is asking: sign-in against hashed passwords, server-side sessions with a CSRF token each, API tokens."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from dashboards.errors import NotAllowed
from dashboards.web.config import Role, WebConfig
from dashboards.web.passwords import hash_password, hash_token, verify_password

SESSION_COOKIE = "ef_session"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class Principal:
    """A signed-in user or a script's token."""

    name: str
    role: Role
    csrf: str | None  # None for API tokens: they are not sent by browsers, so CSRF does not apply

    @property
    def can_act(self) -> bool:
        """Operators act; viewers only read."""
        return self.role == "operator"

    def require_operator(self, action: str) -> None:
        """NotAllowed unless this principal may act."""
        if not self.can_act:
            raise NotAllowed(f"{action} needs the operator role; {self.name} is a {self.role}")


@dataclass
class _Session:
    principal: Principal
    expires: float


class Authenticator:
    """Checks passwords and tokens from the config and keeps sessions in memory (one `fleet serve` process)."""

    def __init__(self, config: WebConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._users = {u.name: u for u in config.users}
        self._tokens = {t.token_sha256: t for t in config.api_tokens}
        self._ttl = config.session_ttl_s
        self._clock = clock
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        # An unknown name is checked against a real user's hash (result ignored), so it costs the same scrypt work
        # as a known name: timing does not tell a guesser who exists.
        self._dummy_hash = config.users[0].password_hash if config.users else hash_password(secrets.token_urlsafe(16))

    def login(self, name: str, password: str) -> str | None:
        """A new session id for correct credentials, None otherwise; the same password work whether name exists."""
        user = self._users.get(name)
        matches = verify_password(password, user.password_hash if user is not None else self._dummy_hash)
        if user is None or not matches:
            return None
        sid = secrets.token_urlsafe(32)
        principal = Principal(user.name, user.role, secrets.token_urlsafe(24))
        with self._lock:
            now = self._clock()
            self._sessions = {k: s for k, s in self._sessions.items() if s.expires > now}
            self._sessions[sid] = _Session(principal, now + self._ttl)
        return sid

    def logout(self, sid: str) -> None:
        """End a session."""
        with self._lock:
            self._sessions.pop(sid, None)

    def session(self, sid: str | None) -> Principal | None:
        """The principal of a live session."""
        if not sid:
            return None
        with self._lock:
            s = self._sessions.get(sid)
            if s is None or s.expires <= self._clock():
                self._sessions.pop(sid, None)
                return None
            return s.principal

    def token(self, authorization: str | None) -> Principal | None:
        """The principal of an `Authorization: Bearer <token>` header."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        digest = hash_token(authorization[len("Bearer "):].strip())
        for known, cfg in self._tokens.items():
            if hmac.compare_digest(known, digest):
                return Principal(cfg.name, cfg.role, None)
        return None


def check_csrf(principal: Principal, header: str | None) -> None:
    """A browser session must echo its CSRF token on every action; API tokens need none."""
    if principal.csrf is None:
        return
    if not header or not hmac.compare_digest(header, principal.csrf):
        raise NotAllowed("missing or wrong CSRF token: reload the page and try again")
