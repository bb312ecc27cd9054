"""
Where a result download may go, with no I/O: the rule every result URL and every redirect hop is held to
before a single byte is fetched. The hook resolves the host once and connects to the address this rule
passed (``pinned``), so what was checked is what is connected to.

- Scheme: https only, except when the connection's Base URL is itself http (the emulator, a local proxy).
- Address: every address the host resolves to must be public, or be an address of the Base URL's host,
  or be allowed by the connection extra ``allowed_download_hosts`` (host names, ``*.suffix`` patterns or
  CIDR blocks: a private CDN or proxy).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOW_EXTRA = "allowed_download_hosts"


@dataclass(frozen=True)
class EgressRule:
    """What a connection allows downloads to reach."""

    api_scheme: str  # the Base URL's scheme
    api_host: str  # the Base URL's host name, lower case
    allowed: tuple[str, ...] = ()  # the connection extra: host names, *.suffix patterns, CIDR blocks

    @classmethod
    def for_base_url(cls, base_url: str, allowed: Iterable[str] = ()) -> EgressRule:
        parts = urlsplit(base_url)
        return cls(parts.scheme.lower(), (parts.hostname or "").lower(), tuple(str(item) for item in allowed))

    def host_allowed(self, host: str) -> bool:
        """The host is named by ``allowed_download_hosts`` (exactly, or under a ``*.`` pattern)."""
        host = host.lower().rstrip(".")
        for item in self.allowed:
            pattern = item.strip().lower().rstrip(".")
            if pattern.startswith("*.") and host.endswith(pattern[1:]):
                return True
            if host == pattern:
                return True
        return False

    def address_allowed(self, address: Address) -> bool:
        for item in self.allowed:
            try:
                network = ipaddress.ip_network(item.strip(), strict=False)
            except ValueError:
                continue
            if address.version == network.version and address in network:
                return True
        return False


def url_refusal(url: str, rule: EgressRule) -> str | None:
    """Why ``url`` may not be fetched whatever its address (scheme, host), or None."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return f"is a {scheme or 'schemeless'} URL (only https is fetched)"
    if scheme == "http" and rule.api_scheme != "http":
        return "is plain http (only https is fetched while the connection's Base URL is https)"
    if not parts.hostname:
        return "names no host"
    if parts.username is not None or parts.password is not None:
        return "carries credentials in the URL"
    return None


def _kind(address: Address) -> str | None:
    """What makes an address non-public, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _kind(address.ipv4_mapped)
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (where cloud metadata services answer)"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved (non-public) address"
    return None


def address_refusal(host: str, addresses: list[Address], api_addresses: list[Address], rule: EgressRule) -> str | None:
    """
    Why a host that resolved to ``addresses`` may not be connected to, or None. Every address must pass:
    a name that resolves to one public and one internal address is refused.
    """
    if not addresses:
        return "does not resolve to any address"
    if rule.host_allowed(host):
        return None
    for address in addresses:
        kind = _kind(address)
        if kind is None or address in api_addresses or rule.address_allowed(address):
            continue
        other = " other than the API's" if kind == "a loopback address" else ""
        if literal_address(host) is not None:
            return f"is {kind}{other}"
        return f"resolves to {address}, {kind}{other}"
    return None


def parse_addresses(texts: Iterable[str]) -> list[Address]:
    """Resolved addresses as ``ipaddress`` objects (an IPv6 scope id is dropped), in order, without repeats."""
    found: list[Address] = []
    for text in texts:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


def literal_address(host: str) -> Address | None:
    """The address a host name spells, when it is an IP literal."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def pinned(url: str, address: Address) -> tuple[str, str, str]:
    """
    ``url`` aimed at ``address`` itself: (the URL with the address as its host, the Host header, the TLS
    server name), so the connection goes where the check said and TLS still verifies the host's name.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    shown = f"[{address}]" if address.version == 6 else str(address)
    netloc = shown if parts.port is None else f"{shown}:{parts.port}"
    header = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), header, host


def link_refusal(url: str, rule: EgressRule) -> str | None:
    """
    Why a result URL may not be shown as a link (the extra link), with no lookup: the scheme rule, and no
    host that names a non-public address or a loopback name, unless it is the API's host or allowed.
    """
    if (why := url_refusal(url, rule)) is not None:
        return why
    host = (urlsplit(url).hostname or "").lower()
    if host == rule.api_host or rule.host_allowed(host):
        return None
    literal = literal_address(host)
    if literal is not None and (kind := _kind(literal)) is not None and not rule.address_allowed(literal):
        return f"names {kind}"
    if host == "localhost" or host.endswith(".localhost"):
        return "names a loopback host"
    return None
