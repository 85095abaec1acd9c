"""Host matching, host-safe redirect targets and what a request says about itself through a proxy (pure logic)."""

from __future__ import annotations

import pytest

from dashboards.web.config import WebConfig
from dashboards.web.hosts import host_allowed, host_name, relative_location
from dashboards.web.request_origin import RequestOrigin


@pytest.mark.parametrize(
    ("header", "name"),
    [("Fleet.Example.com:8443", "fleet.example.com"), ("[::1]:8080", "::1"), ("::1", "::1"), ("", ""),
     (None, ""), ("[::1", "")],
)
def test_host_name(header: str | None, name: str) -> None:
    assert host_name(header) == name


def test_host_allowed() -> None:
    allowed = ["127.0.0.1", "*.example.com"]
    assert host_allowed("127.0.0.1:8080", allowed)
    assert host_allowed("a.b.example.com", allowed)
    assert not host_allowed("example.com", allowed)
    assert not host_allowed("evilexample.com", allowed)
    assert not host_allowed(None, allowed)
    assert host_allowed("anything", ["*"])


@pytest.mark.parametrize(
    ("location", "safe"),
    [("http://evil.example/api/devices?x=1", "/api/devices?x=1"), ("https://evil.example", "/"),
     ("//evil.example/x", "/x"), ("/\\evil.example", "/evil.example"), ("http://h//evil.example", "/evil.example"),
     ("/login?failed=1", "/login?failed=1")],
)
def test_relative_location_never_names_another_host(location: str, safe: str) -> None:
    assert relative_location(location) == safe


def test_client_address_believes_forwarded_for_only_from_trusted_proxies() -> None:
    origin = RequestOrigin(["10.0.0.0/8"])
    xff = {"x-forwarded-for": "6.6.6.6, 203.0.113.9, 10.0.0.2"}
    assert origin.client_address("10.0.0.1", xff) == "203.0.113.9"
    assert origin.client_address("198.51.100.1", xff) == "198.51.100.1"
    assert origin.client_address("10.0.0.1", {}) == "10.0.0.1"
    assert RequestOrigin([]).client_address("10.0.0.1", xff) == "10.0.0.1"


def test_https_is_believed_from_the_scheme_or_a_trusted_proxy() -> None:
    origin = RequestOrigin(["::1"])
    assert origin.is_https("https", None, {})
    assert origin.is_https("http", "::1", {"x-forwarded-proto": "https"})
    assert not origin.is_https("http", "127.0.0.1", {"x-forwarded-proto": "https"})
    assert not origin.is_https("http", "::1", {})


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [("trusted_proxies", ["proxy.local"], "not an IP address"), ("allowed_hosts", [], "nobody could reach"),
     ("public_url", "fleet.example.com", "http(s) URL"), ("secure_cookies", "sometimes", "secure_cookies")],
)
def test_bad_security_settings_are_refused_with_a_clear_line(field: str, value: object, words: str) -> None:
    with pytest.raises(ValueError) as err:
        WebConfig.model_validate({field: value})
    assert words in str(err.value)
