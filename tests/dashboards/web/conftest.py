"""A web config with one operator, one viewer and one API token, over a FakeFleet."""

from __future__ import annotations

import pytest

from dashboards.web.config import MetricRule, OfflineRule, TokenConfig, UserConfig, WebConfig
from dashboards.web.passwords import hash_password, hash_token
from tests.dashboards.web.fakes import FakeFleet

OPERATOR = ("olga", "operator-pass")
VIEWER = ("victor", "viewer-pass")
TOKEN = "script-token-0123456789"
_HASHES = {name: hash_password(pw) for name, pw in (OPERATOR, VIEWER)}


def web_config(**over: object) -> WebConfig:
    """Users, a token and rules the tests rely on."""
    base: dict[str, object] = {
        "users": [UserConfig(name=OPERATOR[0], role="operator", password_hash=_HASHES[OPERATOR[0]]),
                  UserConfig(name=VIEWER[0], role="viewer", password_hash=_HASHES[VIEWER[0]])],
        "api_tokens": [TokenConfig(name="ci-script", role="operator", token_sha256=hash_token(TOKEN))],
        "alerts": [OfflineRule(kind="offline", name="offline", for_s=2),
                   MetricRule(kind="metric", name="slow", metric="e2e_ms_p95", op=">", threshold=50)],
        "live_interval_s": 0.5,
        "allowed_hosts": ["testserver", "127.0.0.1", "localhost"],  # TestClient sends Host: testserver
    }
    base.update(over)
    return WebConfig.model_validate(base)


@pytest.fixture
def fleet() -> FakeFleet:
    """Three devices in group lab, one in group yard."""
    f = FakeFleet()
    for i in range(3):
        f.add_device(f"cam-{i}", ["lab"])
    f.add_device("yard-0", ["yard"])
    return f
