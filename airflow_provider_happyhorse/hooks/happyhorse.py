"""
``HappyHorseHook``: auth and HTTP for HappyHorse. All decisions live in ``core``; this module only
sends requests and sleeps, once for the sync path (an ``httpx.Client``) and once for the async path
(``aiohttp_transport``, one pooled transport shared per event loop), and steps a wait across a
sensor's pokes.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook

from airflow_provider_happyhorse import metrics
from airflow_provider_happyhorse.constants import USER_AGENT
from airflow_provider_happyhorse.core.dialects import ENDPOINT
from airflow_provider_happyhorse.core.egress import (
    Address,
    EgressRule,
    address_refusal,
    literal_address,
    parse_addresses,
    pinned,
    url_refusal,
)
from airflow_provider_happyhorse.core.flows import (
    Cancellation,
    DownloadFlow,
    Fetch,
    Flow,
    Outcome,
    Send,
    Sleep,
    cancel_flow,
    cancel_if_queued_flow,
    check_flow,
    download_flow,
    status_flow,
    submit_flow,
)
from airflow_provider_happyhorse.core.pacing import QueryBucket, Ticket
from airflow_provider_happyhorse.core.responses import (
    answer_limit,
    bounded_answer,
    error_for_status,
    map_transport_error,
    undecoded,
)
from airflow_provider_happyhorse.core.results import REDIRECT_STATUSES, next_hop
from airflow_provider_happyhorse.core.settings import ConnectionSettings
from airflow_provider_happyhorse.core.wait import WaitPlan, wait_flow
from airflow_provider_happyhorse.exceptions import (
    ConfigurationError,
    DownloadRefusedError,
    HappyHorseError,
    ResultUnavailableError,
    TransportError,
)
from airflow_provider_happyhorse.models import JobEvent, JobStatus, VideoRequest

T = TypeVar("T")


def _mask(secret: str) -> None:
    """Have Airflow's log masker hide the key, whatever logs it later."""
    from airflow.providers.common.compat.sdk import mask_secret

    mask_secret(secret)


async def _amask(secret: str) -> None:
    """The same from an event loop: a synchronous call to the supervisor there can deadlock."""
    try:
        from airflow.sdk.log import amask_secret
    except ImportError:  # Airflow before 3.3: the masking call is synchronous, so make it off the loop
        await asyncio.to_thread(_mask, secret)
    else:
        await amask_secret(secret)


@dataclass
class _SharedTransport:
    transport: asyncio.Task[httpx.AsyncBaseTransport]
    users: int = 0


def _close_transport(built: asyncio.Task[httpx.AsyncBaseTransport]) -> None:
    """Close a shared transport once it exists."""
    if not built.cancelled() and built.exception() is None:
        transport = built.result()
        _closing.add(task := asyncio.get_running_loop().create_task(transport.aclose()))
        task.add_done_callback(_closing.discard)


_closing: set[asyncio.Task[None]] = set()  # strong references until each close completes


class _SharedAsyncTransports:
    """
    One async transport per (event loop, base URL, pool size): a thousand triggers in one triggerer
    share one bounded, keep-alive pool instead of a session per poll. Reference counted and closed when
    its last user lets go.
    """

    def __init__(self) -> None:
        # Keys include the loop, so each entry is only ever touched from its own loop's thread.
        self._transports: dict[tuple[Any, ...], _SharedTransport] = {}

    # acquire/release rather than a context manager: a waiting trigger holds its reference for minutes,
    # and every object it keeps alive lengthens the garbage collector's pauses of the triggerer's loop.
    async def acquire(
        self, settings: ConnectionSettings, transport: httpx.AsyncBaseTransport | None
    ) -> tuple[tuple[Any, ...], httpx.AsyncBaseTransport]:
        """The shared transport and the key to :meth:`release` it with."""
        loop = asyncio.get_running_loop()
        key = (id(loop), settings.base_url, settings.max_connections, id(transport))
        shared = self._transports.get(key)
        if shared is None:
            shared = _SharedTransport(loop.create_task(_new_async_transport(settings, transport)))
            self._transports[key] = shared
        shared.users += 1  # counted before any await, so no other user can close it under us
        try:
            return key, await shared.transport
        except BaseException:
            await self.release(key)
            raise

    async def release(self, key: tuple[Any, ...]) -> None:
        shared = self._transports[key]
        shared.users -= 1
        if shared.users == 0:
            del self._transports[key]
            if not shared.transport.done():  # its last user left while it was still being built
                shared.transport.add_done_callback(_close_transport)
            elif not shared.transport.cancelled() and shared.transport.exception() is None:
                await shared.transport.result().aclose()

    def open_transports(self) -> int:
        return len(self._transports)


async def _new_async_transport(
    settings: ConnectionSettings, transport: httpx.AsyncBaseTransport | None
) -> httpx.AsyncBaseTransport:
    if transport is not None:
        return transport
    from airflow_provider_happyhorse.aiohttp_transport import AiohttpTransport

    return await AiohttpTransport.create(settings.base_url, max_connections=settings.max_connections)


shared_async_transports = _SharedAsyncTransports()


class _AsyncSession:
    """
    ``HappyHorseHook.async_session()``. A class rather than a generator-based context manager: a
    waiting trigger holds it for minutes, and every object it keeps alive lengthens the garbage
    collector's pauses of the triggerer's event loop. Re-entering it in the same task holds nothing new.
    """

    __slots__ = ("_held", "_hook")

    def __init__(self, hook: HappyHorseHook) -> None:
        self._hook = hook
        self._held: tuple[asyncio.Task[Any], tuple[Any, ...]] | None = None

    async def __aenter__(self) -> None:
        task, hook = _current_task(), self._hook
        if task in hook._held_transports:
            return
        settings = await hook.aget_settings()
        key, hook._held_transports[task] = await shared_async_transports.acquire(settings, hook._async_transport)
        self._held = (task, key)

    async def __aexit__(self, *exc_info: object) -> None:
        if self._held is not None:
            task, key = self._held
            self._held = None
            del self._hook._held_transports[task]
            await shared_async_transports.release(key)


class _RecentAsyncSettings:
    """
    A triggerer runs thousands of triggers on one connection: each event loop looks a connection up
    once per ``ttl`` seconds (a changed key is picked up after that), not once per trigger. Concurrent
    first users share the one lookup in flight; a failed lookup is not kept.
    """

    ttl = 60.0

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, tuple[float, asyncio.Task[ConnectionSettings]]]
        ] = weakref.WeakKeyDictionary()

    async def get(self, conn_id: str, fetch: Callable[[], Awaitable[ConnectionSettings]]) -> ConnectionSettings:
        loop = asyncio.get_running_loop()
        entries = self._by_loop.setdefault(loop, {})
        entry = entries.get(conn_id)
        if entry is None or loop.time() - entry[0] > self.ttl or _failed(entry[1]):
            entry = (loop.time(), loop.create_task(_as_coroutine(fetch)))
            entries[conn_id] = entry
        # Shielded: one caller being cancelled must not cancel the lookup the others wait for.
        return await asyncio.shield(entry[1])

    def clear(self) -> None:
        self._by_loop.clear()


def _failed(task: asyncio.Task[Any]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)


async def _as_coroutine(fetch: Callable[[], Awaitable[ConnectionSettings]]) -> ConnectionSettings:
    return await fetch()


recent_async_settings = _RecentAsyncSettings()


class _LoopPacer:
    """
    One connection's query bucket in one event loop, and the waiting polls' wake-ups: the bucket decides whose
    turn it is (``core.pacing``), this only sleeps and wakes. One waiter at a time, the timekeeper, sleeps until
    the next token and hands it out; the others each await their own future, set when their turn comes (or when
    they are to keep time in turn), so a thousand waiting polls cost one timer, not a thousand.
    """

    def __init__(self, bucket: QueryBucket) -> None:
        self.bucket = bucket
        self._wakeups: dict[Ticket, asyncio.Future[None]] = {}
        self._timekeeper: Ticket | None = None

    async def turn(
        self, detect_by: float | None, monotonic: Callable[[], float], sleep: Callable[[float], Any]
    ) -> None:
        """Wait until this poll may be sent; cancelled, it gives its place (or its unused token) back."""
        bucket = self.bucket
        ticket = bucket.join(monotonic(), detect_by)
        try:
            while True:
                self._wake(bucket.grant(monotonic()))
                if ticket.granted:
                    break
                if self._timekeeper is None:
                    self._timekeeper = ticket
                if self._timekeeper is ticket:
                    await sleep(bucket.until_token(monotonic()))
                else:
                    wakeup = self._wakeups[ticket] = asyncio.get_running_loop().create_future()
                    await wakeup
        except BaseException:  # cancelled (or the sleep failed) before sending
            self._wakeups.pop(ticket, None)
            bucket.leave(ticket, monotonic())
            self._wake(bucket.grant(monotonic()))  # a token it gave back goes to the next in turn at once
            self._hand_over(ticket)
            raise
        self._hand_over(ticket)

    def _wake(self, granted: list[Ticket]) -> None:
        for ticket in granted:
            wakeup = self._wakeups.pop(ticket, None)
            if wakeup is not None and not wakeup.done():
                wakeup.set_result(None)

    def _hand_over(self, ticket: Ticket) -> None:
        """A timekeeper leaving wakes another waiter to keep time (the first to have begun awaiting)."""
        if self._timekeeper is not ticket:
            return
        self._timekeeper = None
        for waiter, wakeup in self._wakeups.items():
            del self._wakeups[waiter]
            self._timekeeper = waiter
            if not wakeup.done():
                wakeup.set_result(None)
            return


class _QueryBuckets:
    """
    The connections' query buckets (``core.pacing``): one per connection in each event loop, so the polls of
    every trigger in a triggerer share it as they share the loop's transport, and one per connection for the
    sync path in this process (blocking waits and sensors in its threads). A connection whose limit changed
    gets a new bucket.
    """

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, float], _LoopPacer]] = (
            weakref.WeakKeyDictionary()
        )
        self._sync: dict[tuple[str, float], QueryBucket] = {}
        self._lock = threading.Lock()

    def in_loop(self, conn_id: str, rate: float, now: float) -> _LoopPacer:
        """This event loop's bucket and its waiters (only ever touched from the loop's own thread)."""
        pacers = self._by_loop.setdefault(asyncio.get_running_loop(), {})
        pacer = pacers.get((conn_id, rate))
        if pacer is None:
            pacer = pacers[conn_id, rate] = _LoopPacer(QueryBucket(rate, now))
        return pacer

    def reserve_in_process(self, conn_id: str, rate: float, now: float) -> float:
        """A token from this process's bucket: the seconds to wait for it."""
        with self._lock:
            bucket = self._sync.get((conn_id, rate))
            if bucket is None:
                bucket = self._sync[conn_id, rate] = QueryBucket(rate, now)
            return bucket.reserve(now)

    def clear(self) -> None:
        self._by_loop.clear()
        with self._lock:
            self._sync.clear()


query_buckets = _QueryBuckets()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _resolve(host: str, port: int | None) -> list[str]:
    """The addresses a host name resolves to (the system's resolver), for the egress check."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def _current_task() -> asyncio.Task[Any]:
    task = asyncio.current_task()
    if task is None:  # pragma: no cover - coroutines driven by asyncio always run in a task
        raise RuntimeError("HappyHorseHook's async methods must run inside an asyncio task")
    return task


class HappyHorseHook(BaseHook):
    """
    Talks to HappyHorse through an Airflow connection of type ``happyhorse``.

    .. seealso::
        The connection: :doc:`/installation` in the provider's documentation (``docs/installation.md``).

    The connection's host is the base URL (default ``https://happyhorse.app``; a path prefix is kept
    for proxies) and its password the API key. Extras (all optional): ``timeout`` (seconds per
    request), ``max_retries`` (status polls), ``submit_max_retries``, ``retry_initial_delay``,
    ``retry_max_delay``, ``max_retry_after``, ``max_connections`` (async pool size), ``max_queries_per_second``
    (status polls per second, shared by every trigger of a triggerer: ``core.pacing``).

    :param happyhorse_conn_id: the connection id.
    :param transport: an ``httpx`` transport for the sync path (tests use ``httpx.MockTransport``).
    :param async_transport: the same for the async path.
    :param monotonic: the clock the connection's query bucket reads (``core.pacing``; tests give a fake one).
    :param resolve: resolves a result URL's host to its addresses for the egress check (``socket.getaddrinfo``
        by default; tests with a fake transport give a fake one).
    """

    conn_name_attr = "happyhorse_conn_id"
    default_conn_name = "happyhorse_default"
    conn_type = "happyhorse"
    hook_name = "HappyHorse"

    def __init__(
        self,
        happyhorse_conn_id: str = default_conn_name,
        *,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Any] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], datetime] | None = None,
        resolve: Callable[[str, int | None], list[str]] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.happyhorse_conn_id = happyhorse_conn_id
        self._transport = transport
        self._async_transport = async_transport
        self.sleep = sleep
        self._async_sleep = async_sleep
        self.rng = rng
        self.clock = clock or _utcnow
        self._resolve = resolve or _resolve
        self._monotonic = monotonic
        self._settings: ConnectionSettings | None = None
        self._client: httpx.Client | None = None
        # Per task: concurrent tasks on one hook each hold their own reference to the shared transport,
        # so one task leaving its session never closes it under another task's feet.
        self._held_transports: dict[asyncio.Task[Any], httpx.AsyncBaseTransport] = {}

    # -- connection -----------------------------------------------------------------------------

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The form for Airflow before 3.3, which reads it from the hook (3.3 reads the provider info)."""
        from airflow_provider_happyhorse.get_provider_info import UI_FIELD_BEHAVIOUR

        return {
            "hidden_fields": UI_FIELD_BEHAVIOUR["hidden-fields"],
            "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
            "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
        }

    def _not_defined(self) -> ConfigurationError:
        conn_id = self.happyhorse_conn_id
        return ConfigurationError(
            f"The HappyHorse connection {conn_id!r}",
            "is not defined",
            f"Create it (Admin > Connections, type HappyHorse) or set AIRFLOW_CONN_{conn_id.upper()}, or fix "
            "happyhorse_conn_id; then clear the task.",
        )

    @property
    def settings(self) -> ConnectionSettings:
        """The connection's settings; ``ConfigurationError`` when it is missing or unusable."""
        if self._settings is None:
            try:
                conn = self.get_connection(self.happyhorse_conn_id)
            except AirflowNotFoundException:
                raise self._not_defined() from None
            settings = ConnectionSettings.from_connection(conn, conn.extra_dejson if conn.extra else {})
            _mask(settings.api_key)
            self._settings = settings
        return self._settings

    async def aget_settings(self) -> ConnectionSettings:
        """The connection, fetched without blocking the event loop (for triggers)."""
        if self._settings is None:
            self._settings = await recent_async_settings.get(self.happyhorse_conn_id, self._afetch_settings)
        return self._settings

    async def _afetch_settings(self) -> ConnectionSettings:
        from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

        try:
            conn = await get_async_connection(self.happyhorse_conn_id, hook=self)
        except AirflowNotFoundException:
            raise self._not_defined() from None
        extra = await get_async_extra_dejson(conn) if conn.extra else {}
        settings = ConnectionSettings.from_connection(conn, extra)
        await _amask(settings.api_key)
        return settings

    def get_conn(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(transport=self._transport, timeout=self.settings.timeout)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> HappyHorseHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- driving flows --------------------------------------------------------------------------

    def _log_retry(self, error: HappyHorseError, retry: int, delay: float) -> None:
        self.log.info("HappyHorse call failed: %s; retry %d in %.1f s", error, retry, delay)

    def _send(self, request: httpx.Request) -> Outcome:
        """One API request; its answer read within its size limit and, as a whole, within the request timeout."""
        try:
            response = self.get_conn().send(request, stream=True)
            try:
                raw, encoding = _read_raw(response, answer_limit(request), self.settings.timeout)
            finally:
                response.close()
        except httpx.TransportError as exc:
            return exc
        metrics.answered(str(request.extensions.get(ENDPOINT, request.url.path)), response.status_code)
        return bounded_answer(request, response.status_code, response.headers, raw, encoding)

    def _send_action(self, action: Send) -> Outcome:
        """``_send``, a status query first waiting for this process's query bucket (a blocking sleep)."""
        rate = self.settings.max_queries_per_second
        if action.query and rate is not None:
            wait = query_buckets.reserve_in_process(self.happyhorse_conn_id, rate, self._monotonic())
            if wait > 0:
                self.sleep(wait)
        return self._send(action.request)

    def _run(self, flow: Flow[T]) -> T:
        outcome: Outcome = None
        try:
            while True:
                action = flow.send(outcome)
                if isinstance(action, Send):
                    outcome = self._send_action(action)
                elif isinstance(action, Sleep):
                    self.sleep(action.seconds)
                    outcome = None
        except StopIteration as stop:
            result: T = stop.value
            return result

    def async_session(self) -> _AsyncSession:
        """Hold this loop's shared transport across many calls (a trigger holds it for its whole life)."""
        return _AsyncSession(self)

    async def _arun(self, flow: Flow[T]) -> T:
        async with self.async_session():
            transport = self._held_transports[_current_task()]
            outcome: Outcome = None
            try:
                while True:
                    action = flow.send(outcome)
                    if isinstance(action, Send):
                        if action.query:
                            await self._await_query_token(action.detect_by)
                        outcome = await _asend(transport, action.request)
                    elif isinstance(action, Sleep):
                        await self._async_sleep(action.seconds)
                        outcome = None
            except StopIteration as stop:
                result: T = stop.value
                return result

    async def _await_query_token(self, detect_by: datetime | None = None) -> None:
        """
        Wait for this loop's query bucket (no wait when the connection is not paced), in the order of the polls'
        ``detect_by`` (``core.pacing``); a cancelled wait gives its place back.
        """
        rate = (await self.aget_settings()).max_queries_per_second
        if rate is None:
            return
        now = self._monotonic()
        # The allowance's end on the bucket's monotonic clock, from the hook's wall clock the wait counts in.
        by = None if detect_by is None else now + (detect_by - self.clock()).total_seconds()
        pacer = query_buckets.in_loop(self.happyhorse_conn_id, rate, now)
        await pacer.turn(by, self._monotonic, self._async_sleep)

    # -- the API --------------------------------------------------------------------------------

    def _say_extra_fields(self, request: VideoRequest, settings: ConnectionSettings) -> None:
        if request.extra_fields:
            self.log.warning(
                "Sending fields this provider does not check, as given in extra_fields, to %s (dialect %s): %s",
                settings.base_url,
                settings.dialect_name,
                ", ".join(f"{key}={value!r}" for key, value in sorted(request.extra_fields.items())),
            )

    def submit_job(self, request: VideoRequest) -> JobStatus:
        """Create a paid job. Never sent again once the request may have reached the service."""
        self._say_extra_fields(request, self.settings)
        return self._run(submit_flow(self.settings, request, rng=self.rng, on_retry=self._log_retry))

    def get_job(self, job_id: str, *, max_retries: int | None = None) -> JobStatus:
        return self._run(
            status_flow(self.settings, job_id, max_retries=max_retries, rng=self.rng, on_retry=self._log_retry)
        )

    async def asubmit_job(self, request: VideoRequest) -> JobStatus:
        settings = await self.aget_settings()
        self._say_extra_fields(request, settings)
        return await self._arun(submit_flow(settings, request, rng=self.rng, on_retry=self._log_retry))

    async def aget_job(self, job_id: str, *, max_retries: int | None = None) -> JobStatus:
        settings = await self.aget_settings()
        return await self._arun(
            status_flow(settings, job_id, max_retries=max_retries, rng=self.rng, on_retry=self._log_retry)
        )

    def cancel_job(self, job_id: str) -> Cancellation | None:
        """Cancel a job still queued, where the service allows it (None where it has no cancel); never raises."""
        try:
            return self._run(cancel_flow(self.settings, job_id))
        except HappyHorseError as error:
            return Cancellation(
                "unknown", f"Could not cancel job {job_id} ({error}): it may run to its end and be billed."
            )

    async def acancel_queued_job(self, job_id: str) -> Cancellation | None:
        """
        In an event loop: cancel a job only if it is still queued (``core.flows.cancel_if_queued_flow``), where the
        service allows it (None where it has no cancel); never raises.
        """
        settings = await self.aget_settings()
        try:
            return await self._arun(cancel_if_queued_flow(settings, job_id))
        except HappyHorseError as error:
            return Cancellation(
                "unknown", f"Could not cancel job {job_id} ({error}): it may run to its end and be billed."
            )

    def _say(self, level: int, message: str, *args: object) -> None:
        # The logger is made when there is something to say: a waiting trigger keeps few objects alive,
        # as each one lengthens the garbage collector's pauses of the triggerer's event loop.
        self.log.log(level, message, *args)

    def _polled(self, outcome: str) -> None:
        metrics.polled(outcome, conn_id=self.happyhorse_conn_id)

    def _wait_flow(self, settings: ConnectionSettings, plan: WaitPlan) -> Flow[JobEvent]:
        return wait_flow(settings, plan, clock=self.clock, rng=self.rng, say=self._say, on_poll=self._polled)

    def wait_for_job(self, plan: WaitPlan) -> JobEvent:
        """Block until the job's wait ends (blocking mode, for installs without a triggerer)."""
        return self._run(self._wait_flow(self.settings, plan))

    async def await_job(self, plan: WaitPlan) -> JobEvent:
        """The same wait in an event loop (the trigger), holding one shared transport throughout."""
        return await self._arun(self._wait_flow(await self.aget_settings(), plan))

    def wait_in_steps(self, plan: WaitPlan) -> WaitInSteps:
        """The same wait driven one poke at a time (a sensor in poke mode): see :class:`WaitInSteps`."""
        return WaitInSteps(self, self._wait_flow(self.settings, plan))

    def download(self, job_id: str, url: str, fetch: Callable[[], T]) -> T:
        """
        A job's result, fetched by ``fetch`` (one try: it streams ``stream_result`` somewhere and reads what
        came, raising a ``HappyHorseError``), tried again as ``core.flows.download_flow`` decides, with this
        hook's sleep and random source.
        """

        def on_retry(error: HappyHorseError, retry: int, delay: float) -> None:
            self.log.warning("Download of job %s failed (%s); retry %d in %.1f s", job_id, error, retry, delay)

        flow: DownloadFlow[T] = download_flow(self.settings.policy, job_id, url, rng=self.rng, on_retry=on_retry)
        outcome: T | HappyHorseError | None = None
        try:
            while True:
                action = flow.send(outcome)
                if isinstance(action, Fetch):
                    try:
                        outcome = fetch()
                    except HappyHorseError as error:
                        outcome = error
                else:
                    self.sleep(action.seconds)
                    outcome = None
        except StopIteration as stop:
            result: T = stop.value
            return result

    @contextmanager
    def stream_result(self, job_id: str, url: str) -> Iterator[tuple[httpx.Response, str]]:
        """
        Stream a job's result file, following its redirects (a signed CDN URL, usually; see
        ``core.results.next_hop``): yields the answer, streamed and undecoded, and the URL it came from.
        Every URL is held to ``core.egress`` before it is fetched, and the connection goes to the address
        that was checked. The API key is never sent: these URLs are not the API's.
        """
        rule = self.settings.egress
        api_addresses = self._addresses(rule.api_host, None) or []
        chain = [url]
        client = self.get_conn()
        try:
            while True:
                target, host, server_name = self._checked_target(job_id, chain[-1], rule, api_addresses)
                request = client.build_request(
                    "GET",
                    target,
                    headers={"User-Agent": USER_AGENT, "Host": host, "Accept-Encoding": "identity"},
                    extensions={"sni_hostname": server_name},
                )
                response = client.send(request, stream=True, follow_redirects=False)
                if response.status_code not in REDIRECT_STATUSES:
                    break
                response.close()
                next_hop(job_id, chain, response.headers.get("location"))
            try:
                if response.status_code in (403, 404, 410):
                    raise ResultUnavailableError(job_id, " -> ".join(chain), f"HTTP {response.status_code}")
                if response.status_code >= 400:  # its body is not read: it is not the API's
                    raise error_for_status(response.status_code, None, response)
                yield response, chain[-1]
            finally:
                response.close()
        except httpx.TransportError as exc:
            raise map_transport_error(exc) from None

    def _checked_target(
        self, job_id: str, url: str, rule: EgressRule, api_addresses: list[Address]
    ) -> tuple[str, str, str]:
        """``url`` pinned to an address ``core.egress`` allows (``pinned``), or ``DownloadRefusedError``."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if (why := url_refusal(url, rule)) is not None:
            raise DownloadRefusedError(job_id, host, why)
        addresses = self._addresses(host, parts.port)
        if addresses is None:
            raise TransportError(f"the result URL's host {host!r} could not be resolved", request_sent=False)
        if (why := address_refusal(host, addresses, api_addresses, rule)) is not None:
            raise DownloadRefusedError(job_id, host, why)
        return pinned(url, addresses[0])

    def _addresses(self, host: str, port: int | None) -> list[Address] | None:
        """The addresses ``host`` resolves to (an IP literal is its own), or None when it does not resolve."""
        literal = literal_address(host)
        if literal is not None:
            return [literal]
        try:
            return parse_addresses(self._resolve(host, port))
        except (OSError, ValueError):
            return None

    def test_connection(self) -> tuple[bool, str]:
        """
        Success only when the server answered like HappyHorse and checked the key; a wrong key, no key,
        a foreign server, a wrong path prefix and an unreachable host each get their own message. No job
        is created and nothing is retried.
        """
        try:
            settings = self.settings
        except ConfigurationError as error:
            # Airflow's Test button names the connection by a random id: do not show it.
            return False, f"This connection {error.problem}. {error.way_out}"
        try:
            return self._run(check_flow(settings))
        finally:
            self.close()


def _read_raw(response: httpx.Response, limit: int, seconds: float) -> tuple[bytes, str | None]:
    """
    At most ``limit + 1`` undecoded bytes of a streamed answer, all within ``seconds``, and their
    Content-Encoding (None for an answer a transport handed back already read, and so decoded).
    """
    deadline = time.monotonic() + seconds
    raw = bytearray()
    chunks, encoding = undecoded(response)
    for chunk in chunks:
        raw += chunk
        if len(raw) > limit:
            break
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout(f"the answer took more than {seconds:g} s", request=response.request)
    return bytes(raw[: limit + 1]), encoding


async def _asend(transport: httpx.AsyncBaseTransport, request: httpx.Request) -> Outcome:
    """``_send`` on the async path (the aiohttp transport bounds the answer's time itself)."""
    limit = answer_limit(request)
    try:
        response = await transport.handle_async_request(request)
        try:
            if response.is_stream_consumed:
                raw, encoding = response.content, None
            else:
                raw, encoding = b"", response.headers.get("content-encoding")
                async for chunk in response.aiter_raw():
                    raw += chunk
                    if len(raw) > limit:
                        break
        finally:
            await response.aclose()
    except httpx.TransportError as exc:
        return exc
    metrics.answered(str(request.extensions.get(ENDPOINT, request.url.path)), response.status_code)
    return bounded_answer(request, response.status_code, response.headers, raw[: limit + 1], encoding)


class WaitInSteps:
    """
    A wait driven across calls of :meth:`step`, for a sensor's pokes: each step sends the polls that are
    due and returns at the wait's next sleep, keeping its end as a due time, so a poke that comes early
    sends nothing. The poll times are the wait's, rounded up to the next poke.
    """

    def __init__(self, hook: HappyHorseHook, flow: Flow[JobEvent]) -> None:
        self._hook = hook
        self._flow = flow
        self._due: datetime | None = None  # None: the flow has not started
        self.event: JobEvent | None = None

    def step(self) -> JobEvent | None:
        """The event once the wait has ended, else None (poke again later)."""
        if self.event is not None:
            return self.event
        if self._due is not None and self._hook.clock() < self._due:
            return None
        outcome: Outcome = None
        try:
            action = next(self._flow) if self._due is None else self._flow.send(None)
            while isinstance(action, Send) or action.seconds <= 0:
                outcome = self._hook._send_action(action) if isinstance(action, Send) else None
                action = self._flow.send(outcome)
        except StopIteration as stop:
            self.event = stop.value
            return self.event
        self._due = self._hook.clock() + timedelta(seconds=action.seconds)
        return None
