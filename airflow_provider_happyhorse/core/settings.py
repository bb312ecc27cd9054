"""What a HappyHorse connection resolves to, read from its fields and extras (no I/O)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from airflow_provider_happyhorse.constants import (
    DEFAULT_DOWNLOAD_TIMEOUT,
    DEFAULT_MAX_ANSWER_BYTES,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_DOWNLOAD_BYTES,
    DEFAULT_REQUEST_TIMEOUT,
)
from airflow_provider_happyhorse.core.cost import PriceTable
from airflow_provider_happyhorse.core.dialects import DIALECTS, Dialect, DialectName, default_dialect, dialect_named
from airflow_provider_happyhorse.core.egress import ALLOW_EXTRA, EgressRule
from airflow_provider_happyhorse.core.requests import normalize_base_url
from airflow_provider_happyhorse.core.retries import RetryPolicy
from airflow_provider_happyhorse.exceptions import ConfigurationError

QUERY_LIMIT_EXTRA = "max_queries_per_second"
# Connection extras read as numbers, with what they set. Retries count requests sent again after a
# failed one (the same word as RetryPolicy's fields).
_RETRY_EXTRAS = {
    "max_retries": ("max_retries", int),
    "submit_max_retries": ("submit_max_retries", int),
    "retry_initial_delay": ("initial_delay", float),
    "retry_max_delay": ("max_delay", float),
    "max_retry_after": ("max_retry_after", float),
}


class ConnectionFields(Protocol):
    """The fields of an Airflow connection that settings are read from."""

    conn_id: str
    host: str | None
    password: str | None
    schema: str | None


@dataclass(frozen=True)
class ConnectionSettings:
    """What a connection resolves to. The key is kept out of repr()."""

    base_url: str
    api_key: str = field(repr=False)
    timeout: float = DEFAULT_REQUEST_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES
    max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES
    download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT
    allowed_download_hosts: tuple[str, ...] = ()
    # How the service spells its calls (``core.dialects``): the extra ``dialect``, else from the Base URL's host.
    dialect_name: DialectName = "happyhorse"
    # DashScope's prices (``core.cost``): the extras ``price_per_second`` and ``currency``; None: not set.
    prices: PriceTable | None = None
    # Status polls per second, all triggers of a triggerer (or one process) together (``core.pacing``): the extra
    # ``max_queries_per_second``, else the dialect's documented limit; None: not paced.
    max_queries_per_second: float | None = None

    @property
    def dialect(self) -> Dialect:
        return dialect_named(self.dialect_name)

    @property
    def egress(self) -> EgressRule:
        """Where result downloads may go (``core.egress``)."""
        return EgressRule.for_base_url(self.base_url, self.allowed_download_hosts)

    @classmethod
    def from_connection(cls, conn: ConnectionFields, extra: Mapping[str, Any]) -> ConnectionSettings:
        """
        Settings from a connection and its (already parsed) extra; the caller masks the key. An unusable
        connection raises ``ConfigurationError`` before anything is sent.
        """
        subject = f"The HappyHorse connection {conn.conn_id!r}"
        if not conn.password:
            raise ConfigurationError(
                subject,
                "has no API key",
                "Put the key from the HappyHorse dashboard's API Keys page in its API key field; then clear the task.",
            )
        try:
            base_url = normalize_base_url(conn.host, scheme=extra.get("scheme"), path_prefix=conn.schema)
        except ValueError as error:
            raise ConfigurationError(
                subject,
                f"has an unusable Base URL ({error})",
                "Set it to the service's URL, e.g. https://happyhorse.app.",
            ) from None
        try:
            policy = RetryPolicy(
                **{name: kind(extra[key]) for key, (name, kind) in _RETRY_EXTRAS.items() if key in extra}
            )
            timeout = float(extra.get("timeout", DEFAULT_REQUEST_TIMEOUT))
            max_connections = int(extra.get("max_connections", DEFAULT_MAX_CONNECTIONS))
            max_answer_bytes = int(extra.get("max_answer_bytes", DEFAULT_MAX_ANSWER_BYTES))
            max_download_bytes = int(extra.get("max_download_bytes", DEFAULT_MAX_DOWNLOAD_BYTES))
            download_timeout = float(extra.get("download_timeout", DEFAULT_DOWNLOAD_TIMEOUT))
        except (TypeError, ValueError) as error:
            raise ConfigurationError(
                subject, f"has an extra that is not a number ({error})", 'Fix its extra JSON, e.g. {"timeout": 30}.'
            ) from None
        limits = (
            ("max_answer_bytes", max_answer_bytes),
            ("max_download_bytes", max_download_bytes),
            ("download_timeout", download_timeout),
        )
        for name, value in limits:
            if value <= 0:
                raise ConfigurationError(
                    subject, f"has {name} {value!r} (must be above 0)", "Fix its extra JSON or remove the key."
                )
        allowed = extra.get(ALLOW_EXTRA, [])
        if isinstance(allowed, str):
            allowed = [item for item in allowed.split(",") if item.strip()]
        if not isinstance(allowed, list) or not all(isinstance(item, str) for item in allowed):
            raise ConfigurationError(
                subject,
                f"has {ALLOW_EXTRA} {allowed!r} (must be a list of host names or CIDR blocks)",
                f'Fix its extra JSON, e.g. {{"{ALLOW_EXTRA}": ["cdn.internal.example", "10.20.0.0/16"]}}.',
            )
        dialect = extra.get("dialect") or extra.get("extra__happyhorse__dialect") or default_dialect(base_url)
        if dialect not in DIALECTS:
            raise ConfigurationError(
                subject,
                f"has dialect {dialect!r} (it is one of {', '.join(DIALECTS)})",
                'Fix its extra JSON, e.g. {"dialect": "dashscope"}, or remove the key: the Base URL\'s host then '
                "decides (dashscope*.aliyuncs.com is dashscope, any other host happyhorse).",
            )
        try:
            prices = PriceTable.from_extra(extra)
        except ValueError as error:
            raise ConfigurationError(
                subject, f"has an unusable price table ({error})", "Fix its extra JSON or remove the keys."
            ) from None
        return cls(
            dialect_name=dialect,
            prices=prices,
            max_queries_per_second=_queries_per_second(subject, extra, dialect),
            base_url=base_url,
            api_key=conn.password,
            timeout=timeout,
            max_connections=max_connections,
            policy=policy,
            max_answer_bytes=max_answer_bytes,
            max_download_bytes=max_download_bytes,
            download_timeout=download_timeout,
            allowed_download_hosts=tuple(item.strip() for item in allowed),
        )


def _queries_per_second(subject: str, extra: Mapping[str, Any], dialect: DialectName) -> float | None:
    """The extra ``max_queries_per_second`` (0: not paced), else the dialect's documented query limit."""
    if extra.get(QUERY_LIMIT_EXTRA) is None:
        return dialect_named(dialect).query_limit
    value = extra[QUERY_LIMIT_EXTRA]
    try:
        rate = float(value)
    except (TypeError, ValueError):
        rate = math.nan
    if isinstance(value, bool) or not math.isfinite(rate) or rate < 0:
        raise ConfigurationError(
            subject,
            f"has {QUERY_LIMIT_EXTRA} {value!r} (must be a number of status polls per second, 0 or above)",
            f'Fix its extra JSON, e.g. {{"{QUERY_LIMIT_EXTRA}": 10}}; 0 turns pacing off; remove the key for the '
            "dialect's documented limit (20 for dashscope, none for happyhorse).",
        )
    return rate or None
