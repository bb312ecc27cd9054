"""Where result downloads may go: the I/O-free rule (``core.egress``) and the hook holding every hop to it."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import httpx
import pytest

from airflow_provider_happyhorse.core.egress import (
    EgressRule,
    address_refusal,
    link_refusal,
    parse_addresses,
    pinned,
    url_refusal,
)
from airflow_provider_happyhorse.exceptions import DownloadRefusedError, TransportError
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
from airflow_provider_happyhorse.links.happyhorse import shown_url
from airflow_provider_happyhorse.storage import store_clip
from support.service import API_KEY, PUBLIC_ADDRESS, ConnectionSetter, FakeService, reply, resolve

CDN_URL = "https://cdn.test/files/a.mp4"
HTTPS_RULE = EgressRule.for_base_url("https://happyhorse.app")
HTTP_RULE = EgressRule.for_base_url("http://127.0.0.1:8080")
API = parse_addresses(["127.0.0.1"])


def addresses(*texts: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    return parse_addresses(texts)


@pytest.mark.parametrize(
    ("url", "rule", "refusal"),
    [
        ("https://cdn.example.com/a.mp4", HTTPS_RULE, None),
        ("http://cdn.example.com/a.mp4", HTTPS_RULE, "is plain http (only https is fetched while"),
        ("http://cdn.example.com/a.mp4", HTTP_RULE, None),
        ("ftp://cdn.example.com/a.mp4", HTTP_RULE, "is a ftp URL (only https is fetched)"),
        ("file:///etc/passwd", HTTP_RULE, "is a file URL"),
        ("https://user:pw@cdn.example.com/a.mp4", HTTPS_RULE, "carries credentials in the URL"),
    ],
)
def test_the_scheme_rule(url: str, rule: EgressRule, refusal: str | None) -> None:
    found = url_refusal(url, rule)
    assert found == refusal if refusal is None else found is not None and found.startswith(refusal)


@pytest.mark.parametrize(
    ("host", "resolved", "rule", "refusal"),
    [
        ("cdn.example.com", ["93.184.215.14"], HTTPS_RULE, None),
        ("169.254.169.254", ["169.254.169.254"], HTTPS_RULE, "is a link-local address"),
        ("meta.example.com", ["169.254.169.254"], HTTPS_RULE, "resolves to 169.254.169.254, a link-local address"),
        ("10.0.0.7", ["10.0.0.7"], HTTPS_RULE, "is a private address"),
        ("192.168.1.2", ["192.168.1.2"], HTTPS_RULE, "is a private address"),
        ("127.0.0.2", ["127.0.0.2"], HTTP_RULE, "is a loopback address other than the API's"),
        ("127.0.0.1", ["127.0.0.1"], HTTP_RULE, None),  # the API's own host (the emulator, a local proxy)
        ("[::1]", ["::1"], HTTPS_RULE, "is a loopback address other than the API's"),
        ("mapped.example.com", ["::ffff:10.1.2.3"], HTTPS_RULE, "resolves to ::ffff:"),
        ("0.0.0.0", ["0.0.0.0"], HTTPS_RULE, "is an unspecified address"),  # noqa: S104
        ("docs.example.com", ["192.0.2.1"], HTTPS_RULE, "resolves to 192.0.2.1, a private address"),
        ("mixed.example.com", ["93.184.215.14", "10.0.0.1"], HTTPS_RULE, "resolves to 10.0.0.1, a private address"),
        ("nowhere.example.com", [], HTTPS_RULE, "does not resolve to any address"),
    ],
)
def test_the_address_rule(host: str, resolved: list[str], rule: EgressRule, refusal: str | None) -> None:
    found = address_refusal(host.strip("[]"), addresses(*resolved), API if rule is HTTP_RULE else [], rule)
    assert found == refusal if refusal is None else found is not None and found.startswith(refusal)


def test_the_connection_extra_allows_a_private_cdn_by_name_pattern_or_block() -> None:
    rule = EgressRule.for_base_url(
        "https://happyhorse.app", ["cdn.corp.example", "*.media.corp.example", "10.20.0.0/16"]
    )
    assert address_refusal("cdn.corp.example", addresses("10.9.9.9"), [], rule) is None
    assert address_refusal("eu.media.corp.example", addresses("10.9.9.9"), [], rule) is None
    assert address_refusal("other.example", addresses("10.20.3.4"), [], rule) is None
    assert address_refusal("other.example", addresses("10.21.3.4"), [], rule) is not None
    assert address_refusal("media.corp.example.evil.test", addresses("10.9.9.9"), [], rule) is not None


def test_pinned_aims_at_the_checked_address_and_keeps_the_name_for_host_and_tls() -> None:
    target, host, server_name = pinned("https://cdn.example.com:8443/v/a.mp4?sig=1", addresses("93.184.215.14")[0])
    assert (target, host, server_name) == (
        "https://93.184.215.14:8443/v/a.mp4?sig=1",
        "cdn.example.com:8443",
        "cdn.example.com",
    )
    target, host, _ = pinned("http://cdn.example.com/a.mp4", addresses("2606:2800:220:1::1")[0])
    assert (target, host) == ("http://[2606:2800:220:1::1]/a.mp4", "cdn.example.com")


@pytest.mark.parametrize(
    ("url", "rule", "shown"),
    [
        ("https://cdn.example.com/a.mp4", HTTPS_RULE, True),
        ("http://cdn.example.com/a.mp4", HTTPS_RULE, False),
        ("https://169.254.169.254/latest/meta-data/", HTTPS_RULE, False),
        ("https://10.0.0.1/a.mp4", HTTPS_RULE, False),
        ("https://localhost/a.mp4", HTTPS_RULE, False),
        ("http://127.0.0.1:8080/files/a.mp4", HTTP_RULE, True),  # the emulator's own host
        ("http://127.0.0.2:8080/files/a.mp4", HTTP_RULE, False),
        ("javascript:alert(1)", HTTPS_RULE, False),
    ],
)
def test_the_extra_link_shows_only_urls_that_pass(url: str, rule: EgressRule, shown: bool) -> None:
    assert (link_refusal(url, rule) is None) is shown
    assert shown_url(url, rule) == (url if shown else "")


# -- the hook holds every hop to the rule, before anything is fetched ----------------------------------------


def hook_for(service: FakeService, resolver: object = resolve) -> HappyHorseHook:
    return HappyHorseHook(transport=service.transport(), resolve=resolver, sleep=lambda s: None, rng=lambda: 0.5)  # type: ignore[arg-type]


def redirect(location: str) -> object:
    return reply(302, b"", {"Location": location})


@pytest.mark.parametrize(
    ("url", "hops", "rule"),
    [
        ("http://169.254.169.254/latest/meta-data/", [], "is a link-local address"),
        ("http://10.255.255.1/clip.mp4", [], "is a private address"),
        ("http://127.0.0.2:9/clip.mp4", [], "is a loopback address other than the API's"),
        (CDN_URL, [redirect("http://169.254.169.254/x")], "is a link-local address"),
        (CDN_URL, [redirect("http://10.255.255.1/x")], "is a private address"),
        (CDN_URL, [redirect("http://127.0.0.2:9/x")], "is a loopback address other than the API's"),
    ],
    ids=[
        "link-local",
        "private",
        "other loopback",
        "redirect to link-local",
        "redirect to private",
        "redirect to loopback",
    ],
)
def test_a_refused_url_or_hop_fails_naming_job_host_and_rule_with_nothing_fetched_there(
    tmp_path: Path, connection: ConnectionSetter, url: str, hops: list[object], rule: str
) -> None:
    connection(host="http://hh.test")  # http: only the address rule can refuse
    service = FakeService()
    service.file_faults.extend(hops)  # type: ignore[arg-type]
    with pytest.raises(DownloadRefusedError) as raised:
        store_clip(hook_for(service), job_id="n92evil", url=url, destination=tmp_path / "clip.mp4")
    message = str(raised.value)
    assert message.startswith("The video of HappyHorse job n92evil was not downloaded: the URL on host ")
    assert rule in message
    assert "allowed_download_hosts" in message
    # Only the allowed first hop of a redirect was requested, at the public address it resolved to.
    assert [request.url.host for request in service.requests] == [PUBLIC_ADDRESS] * len(hops)
    assert list(tmp_path.iterdir()) == []


def test_https_to_http_is_refused_when_the_base_url_is_https(tmp_path: Path, connection: ConnectionSetter) -> None:
    connection(host="https://hh.test")
    service = FakeService()
    service.file_faults.append(redirect("http://cdn.test/clip.mp4"))  # type: ignore[arg-type]
    with pytest.raises(DownloadRefusedError, match="is plain http"):
        store_clip(hook_for(service), job_id="n92down", url=CDN_URL, destination=tmp_path / "c.mp4")
    assert len(service.requests) == 1


def test_a_name_is_resolved_once_per_hop_and_the_address_checked_is_the_one_asked(
    tmp_path: Path, connection: ConnectionSetter
) -> None:
    connection(host="https://hh.test")
    asked: list[str] = []

    def rebinding(host: str, port: int | None) -> list[str]:
        asked.append(host)
        return ["93.184.215.14"] if len(asked) <= 2 else ["127.0.0.1"]  # a second lookup would be loopback

    service = FakeService()
    store_clip(hook_for(service, rebinding), job_id="n92dns", url=CDN_URL, destination=tmp_path / "c.mp4")
    assert asked == ["hh.test", "cdn.test"]  # the API's host, then the one hop
    assert [request.url.host for request in service.requests] == ["93.184.215.14"]


def test_a_host_that_does_not_resolve_is_a_transport_error_retried(
    tmp_path: Path, connection: ConnectionSetter
) -> None:
    connection(host="https://hh.test")

    def nowhere(host: str, port: int | None) -> list[str]:
        raise OSError("Name or service not known")

    service = FakeService()
    with pytest.raises(TransportError, match="could not be resolved"):
        store_clip(hook_for(service, nowhere), job_id="n92dns", url=CDN_URL, destination=tmp_path / "c.mp4")
    assert service.requests == []


def test_the_key_is_never_sent_to_a_result_host(tmp_path: Path, connection: ConnectionSetter) -> None:
    connection(host="https://hh.test")
    service = FakeService()
    store_clip(hook_for(service), job_id="n92key", url=CDN_URL, destination=tmp_path / "c.mp4")
    assert all("authorization" not in request.headers for request in service.requests)
    assert all(API_KEY not in str(request.url) for request in service.requests)
    assert [request.headers["accept-encoding"] for request in service.requests] == ["identity"]


def test_an_encoded_body_is_never_inflated(tmp_path: Path, connection: ConnectionSetter) -> None:
    connection(host="https://hh.test")
    service = FakeService()

    def gzipped(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"\x1f\x8b" + b"\0" * 64)
        )

    service.file_faults.extend([gzipped] * 5)
    with pytest.raises(Exception, match="encoded as 'gzip', which was not asked for"):
        store_clip(hook_for(service), job_id="n92gz", url=CDN_URL, destination=tmp_path / "c.mp4")
    assert list(tmp_path.iterdir()) == []
