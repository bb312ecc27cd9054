"""
The async path's transport: ``httpx`` requests sent over one pooled ``aiohttp`` session.

``core`` builds ``httpx.Request`` objects and reads ``httpx.Response`` objects; only sending
differs between the paths. The hook calls this transport directly, without an ``httpx.AsyncClient``:
for a status poll the client layer (cookies, redirects, auth hooks, response streaming) costs more
CPU than the request itself, and httpx's own async pool gets dearer per request as hundreds of polls
bunch up (docs/reports/benchmarks.md, "Choosing the async transport"). A request is sent whole and its answer read raw
(undecoded), at most one byte past the request's answer limit and within its read timeout as a whole:
the hook decodes it within that limit (``core.responses.bounded_answer``).

aiohttp's failures become the httpx error that says what is known about the request: ``ConnectError``
and ``ConnectTimeout`` only when it cannot have reached the server (``core.responses`` decides from that
whether a paid submission may be sent again).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from typing import TYPE_CHECKING, Any

import certifi
import httpx

from airflow_provider_happyhorse.core.responses import answer_limit

if TYPE_CHECKING:
    import aiohttp


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """The CA bundle the sync path (httpx) verifies against; loading it takes tens of ms, so once."""
    return ssl.create_default_context(cafile=certifi.where())


def _prepare(base_url: str) -> dict[str, Any]:
    """Load the CA bundle; the proxy the environment names for ``base_url`` (``HTTPS_PROXY``, ``NO_PROXY``...)."""
    from aiohttp.helpers import get_env_proxy_for_url
    from yarl import URL

    default_ssl_context()
    with contextlib.suppress(LookupError):
        proxy, proxy_auth = get_env_proxy_for_url(URL(base_url))
        return {"proxy": proxy, "proxy_auth": proxy_auth}
    return {}


class AiohttpTransport(httpx.AsyncBaseTransport):
    """
    One ``aiohttp.ClientSession`` with a bounded keep-alive pool, for requests to one service. Build it
    with :meth:`create` inside the event loop that will use it.

    The environment's proxy for the service (``HTTPS_PROXY``, ``NO_PROXY``...) is read once, as the sync
    path reads it: aiohttp's own ``trust_env`` would read it, and ``.netrc``, in a thread on every
    request. No cookies are kept. Timeouts come from the request's ``timeout`` extension, as with every
    httpx transport.
    """

    def __init__(self, *, max_connections: int, proxy: dict[str, Any], keepalive_expiry: float = 15.0) -> None:
        import aiohttp

        self._proxy = proxy
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=max_connections, keepalive_timeout=keepalive_expiry, ssl=default_ssl_context()
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,  # httpx.Response decodes the body by its Content-Encoding
        )

    @classmethod
    async def create(cls, base_url: str, *, max_connections: int) -> AiohttpTransport:
        # Importing aiohttp, loading the CA bundle and reading the environment take hundreds of ms the
        # triggerer's event loop must not wait for: done in a thread. The session belongs to the loop.
        return cls(max_connections=max_connections, proxy=await asyncio.to_thread(_prepare, base_url))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import aiohttp

        timeout = request.extensions.get("timeout", {})
        try:
            async with self._session.request(
                request.method,
                str(request.url),
                headers=request.headers,
                data=request.content or None,
                allow_redirects=False,
                **self._proxy,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            ) as answer:
                content = await asyncio.wait_for(_read_at_most(answer, answer_limit(request) + 1), timeout.get("read"))
        except (TimeoutError, aiohttp.ClientError) as error:
            raise httpx_error(error, request) from error
        return httpx.Response(
            answer.status,
            headers=answer.raw_headers,
            stream=httpx.ByteStream(content),  # not content=: httpx would decode it, past any limit
            request=request,
            extensions={"reason_phrase": (answer.reason or "").encode(), "http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        await self._session.close()


async def _read_at_most(answer: aiohttp.ClientResponse, size: int) -> bytes:
    """Up to ``size`` bytes of the raw body (aiohttp decompresses nothing here: ``auto_decompress=False``)."""
    content = bytearray()
    while len(content) < size and (chunk := await answer.content.read(size - len(content))):
        content += chunk
    return bytes(content)


def httpx_error(error: aiohttp.ClientError | asyncio.TimeoutError, request: httpx.Request) -> httpx.TransportError:
    """The httpx error for an aiohttp one. Only failures before sending count as connect errors."""
    import aiohttp

    kind: type[httpx.TransportError]
    if isinstance(error, aiohttp.ConnectionTimeoutError):  # no connection (or pool slot) in time
        kind = httpx.ConnectTimeout
    elif isinstance(error, asyncio.TimeoutError):  # aiohttp's read timeouts are TimeoutErrors too
        kind = httpx.ReadTimeout
    elif isinstance(error, aiohttp.ClientConnectorError):  # refused, DNS, TLS handshake, proxy
        kind = httpx.ConnectError
    elif isinstance(error, aiohttp.ServerDisconnectedError):
        kind = httpx.RemoteProtocolError
    elif isinstance(error, (aiohttp.ClientPayloadError, aiohttp.ClientOSError)):
        kind = httpx.ReadError
    elif isinstance(error, aiohttp.InvalidURL):
        kind = httpx.UnsupportedProtocol
    else:  # e.g. a malformed status line or headers, or anything aiohttp adds later
        kind = httpx.RemoteProtocolError
    return kind(str(error) or type(error).__name__, request=request)
