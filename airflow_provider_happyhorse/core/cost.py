"""
What a render costs, in its dialect's unit, with no I/O.

happyhorse.app bills in credits, from its public price list (``models.CREDITS_PER_SECOND``). DashScope
(Alibaba Cloud Model Studio) bills money per second of output by resolution, in the account's currency;
no price is hard-coded for it: the connection's extra ``price_per_second`` (e.g.
``{"720P": 0.14, "1080P": 0.28}``) with ``currency`` (e.g. ``"USD"``) sets it. Without that table a
DashScope estimate is unknown, and a limit on it is refused before anything is paid.

An estimate is a :class:`CostEstimate`: an amount (None: unknown) and its unit. Amounts of different units
are never added.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from airflow_provider_happyhorse.models import VideoRequest

CREDITS = "credits"
# The unit of a DashScope estimate whose connection sets no price table: money, in a currency not known.
UNKNOWN_CURRENCY = "money"
PRICE_EXTRA = "price_per_second"
CURRENCY_EXTRA = "currency"
# What DashScope renders when the request names no resolution (DASHSCOPE_API.md).
DASHSCOPE_DEFAULT_RESOLUTION = "1080P"
# An edit lasts as long as its source video, at most this long: its estimate is for the longest.
MAX_EDIT_SECONDS = 15.0
# The extra to set, as the messages show it.
PRICE_EXTRA_EXAMPLE = '{"price_per_second": {"720P": 0.14, "1080P": 0.28}, "currency": "USD"}'


class CostEstimate(BaseModel):
    """An estimated cost: ``amount`` in ``unit`` (``credits`` or a currency); ``amount`` None when unknown."""

    model_config = ConfigDict(frozen=True)

    amount: float | None
    unit: str
    # Why the amount is unknown, or what it assumes (an edit at its longest), in words; None: nothing to say.
    note: str | None = None

    def __str__(self) -> str:
        if self.amount is None:
            return f"unknown ({self.unit}: {self.note})" if self.note else f"unknown {self.unit}"
        said = f"{self.amount:g} {self.unit}"
        return f"{said} ({self.note})" if self.note else said


@dataclass(frozen=True)
class PriceTable:
    """A DashScope account's prices: money per second of output by resolution, in ``currency``."""

    per_second: Mapping[str, float]
    currency: str

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> PriceTable | None:
        """
        The table in a connection's extra, None when it sets none; ``ValueError`` naming the key, the value
        and the shape expected when it is not one.
        """
        table, currency = extra.get(PRICE_EXTRA), extra.get(CURRENCY_EXTRA)
        if table is None and currency is None:
            return None
        if not isinstance(table, Mapping) or not table:
            raise ValueError(f"{PRICE_EXTRA} {table!r} is not a table of resolution to price: {PRICE_EXTRA_EXAMPLE}")
        prices: dict[str, float] = {}
        for resolution, price in table.items():
            key = str(resolution).upper()
            if key not in ("720P", "1080P"):
                raise ValueError(f"{PRICE_EXTRA} has resolution {resolution!r} (it is 720P or 1080P)")
            if isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price) or price < 0:
                raise ValueError(f"{PRICE_EXTRA}[{resolution!r}] is {price!r} (a price is a number of at least 0)")
            prices[key] = float(price)
        if not isinstance(currency, str) or not currency.strip():
            raise ValueError(f"{CURRENCY_EXTRA} {currency!r} is not a currency: set it beside {PRICE_EXTRA}, e.g. USD")
        return cls(per_second=prices, currency=currency.strip())


def estimate_cost(request: VideoRequest, dialect: str, prices: PriceTable | None = None) -> CostEstimate:
    """A request's estimated cost in ``dialect``'s unit; the service's own bill is what counts."""
    if dialect != "dashscope":
        return CostEstimate(amount=request.estimate_credits(), unit=CREDITS)
    resolution = request.resolution or DASHSCOPE_DEFAULT_RESOLUTION
    if prices is None:
        return CostEstimate(
            amount=None,
            unit=UNKNOWN_CURRENCY,
            note=f"the connection sets no DashScope price table: set its extra, e.g. {PRICE_EXTRA_EXAMPLE}",
        )
    price = prices.per_second.get(resolution)
    if price is None:
        return CostEstimate(
            amount=None,
            unit=prices.currency,
            note=f"the connection's {PRICE_EXTRA} has no price for {resolution}: add it to its extra",
        )
    if request.effective_task == "edit":
        return CostEstimate(
            amount=rounded(price * MAX_EDIT_SECONDS),
            unit=prices.currency,
            note=f"at most: an edit lasts as long as its source video, up to {MAX_EDIT_SECONDS:g} s",
        )
    return CostEstimate(amount=rounded(price * request.duration), unit=prices.currency)


def rounded(amount: float) -> float:
    """An amount of money (or a sum of them) to six places: floats make 0.14 * 3 0.42000000000000004, and no bill
    shows more places."""
    return round(amount, 6)
