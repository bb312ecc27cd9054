"""
Cost in the dialect's unit (issue 23, item 6): credits from happyhorse.app's price list, money on DashScope from
the connection's price table (unknown without one), the limits refused before anything is sent, and the unit in
the messages, the result and the metrics.
"""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_happyhorse import metrics
from airflow_provider_happyhorse.core.cost import CostEstimate, PriceTable, estimate_cost
from airflow_provider_happyhorse.core.record import RenderRecord
from airflow_provider_happyhorse.exceptions import ConfigurationError
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
from airflow_provider_happyhorse.models import VideoRequest
from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
from support.clock import START, FakeClock
from support.context import DictStore, make_context
from support.dashscope import DS_HOST, FakeDashScope
from support.service import HOST, ConnectionSetter, resolve

PRICES = {"price_per_second": {"720P": 0.14, "1080P": 0.28}, "currency": "USD"}
VIDEO = "https://cdn.example/yesterday.mp4"


def hook_on(service: FakeDashScope) -> HappyHorseHook:
    clock = FakeClock()
    transport = service.transport()
    return HappyHorseHook(
        transport=transport,
        async_transport=transport,
        resolve=resolve,
        sleep=clock.sleep,
        async_sleep=clock.async_sleep,
        rng=lambda: 0.5,
        clock=clock,
    )


def operator_on(service: FakeDashScope, **kwargs: Any) -> GenerateVideoOperator:
    operator = GenerateVideoOperator(task_id="render", prompt="a horse", duration=5, deferrable=False, **kwargs)
    operator.hook = hook_on(service)  # type: ignore[misc]
    return operator


# -- the estimate ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "dialect", "prices", "expected"),
    [
        # happyhorse.app's price list: 40 credits/s std silent, 80 pro with sound.
        ({"prompt": "a", "duration": 5, "sound": False}, "happyhorse", None, CostEstimate(amount=200, unit="credits")),
        (
            {"prompt": "a", "duration": 4, "mode": "pro", "sound": True},
            "happyhorse",
            None,
            CostEstimate(amount=320, unit="credits"),
        ),
        # DashScope: per second by resolution; 1080P when the request names none.
        (
            {"prompt": "a", "duration": 5, "resolution": "720P"},
            "dashscope",
            PRICES,
            CostEstimate(amount=0.7, unit="USD"),
        ),
        ({"prompt": "a", "duration": 3}, "dashscope", PRICES, CostEstimate(amount=0.84, unit="USD")),
    ],
)
def test_the_estimate_is_in_the_dialects_unit(
    fields: dict[str, Any], dialect: str, prices: dict[str, Any] | None, expected: CostEstimate
) -> None:
    table = None if prices is None else PriceTable.from_extra(prices)
    assert estimate_cost(VideoRequest.parse(fields), dialect, table) == expected


def test_an_edit_is_estimated_at_its_longest_and_says_so() -> None:
    request = VideoRequest.parse({"prompt": "make it night", "source_video": VIDEO, "resolution": "720P"})
    cost = estimate_cost(request, "dashscope", PriceTable.from_extra(PRICES))
    assert (cost.amount, cost.unit) == (pytest.approx(0.14 * 15), "USD")
    assert "at most" in str(cost)
    assert "15 s" in str(cost)


def test_without_a_price_table_a_dashscope_estimate_is_unknown_and_says_which_extra_to_set() -> None:
    cost = estimate_cost(VideoRequest.parse({"prompt": "a"}), "dashscope", None)
    assert cost.amount is None
    assert "unknown" in str(cost)
    assert "price_per_second" in str(cost)
    only_720 = PriceTable.from_extra({"price_per_second": {"720p": 0.1}, "currency": "EUR"})
    assert only_720 is not None
    assert only_720.per_second == {"720P": 0.1}
    missing = estimate_cost(VideoRequest.parse({"prompt": "a", "resolution": "1080P"}), "dashscope", only_720)
    assert missing.amount is None
    assert "no price for 1080P" in str(missing)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"price_per_second": 0.14, "currency": "USD"}, "is not a table of resolution to price"),
        ({"price_per_second": {"4K": 1}, "currency": "USD"}, "has resolution '4K'"),
        ({"price_per_second": {"720P": -1}, "currency": "USD"}, "a price is a number of at least 0"),
        ({"price_per_second": {"720P": True}, "currency": "USD"}, "a price is a number of at least 0"),
        ({"price_per_second": {"720P": 0.14}}, "currency None is not a currency"),
        ({"currency": "USD"}, "price_per_second None"),
    ],
)
def test_an_unusable_price_table_is_refused_naming_the_key(
    connection: ConnectionSetter, extra: dict[str, Any], words: str
) -> None:
    connection(host=DS_HOST, extra=extra)
    with pytest.raises(ConfigurationError, match="unusable price table") as raised:
        _ = HappyHorseHook().settings
    assert words in str(raised.value)


# -- limits, refused before anything is sent -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "limits", "words"),
    [
        (
            PRICES,
            {"max_credits": 1000},
            "max_credits: the connection 'happyhorse_default' speaks Alibaba Cloud Model Studio (DashScope), "
            "which bills money, not credits; set max_cost instead",
        ),
        ({}, {"max_cost": 5}, "max_cost: the estimate for this video is unknown"),
        (PRICES, {"max_cost": 1}, "max_cost: the estimate for this video is 1.4 USD, above the limit 1 USD."),
    ],
)
def test_dashscope_limits_are_refused_before_paying(
    connection: ConnectionSetter, extra: dict[str, Any], limits: dict[str, float], words: str
) -> None:
    connection(host=DS_HOST, extra=extra)
    service = FakeDashScope()
    with pytest.raises(AirflowFailException) as raised:
        operator_on(service, **limits).execute(make_context(DictStore()))
    assert words in str(raised.value)
    assert str(raised.value).endswith("Nothing was submitted.")
    if not extra:
        assert "price_per_second" in str(raised.value)  # the extra to set
    assert service.requests == []


def test_max_cost_on_happyhorse_app_is_in_credits(connection: ConnectionSetter) -> None:
    connection(host=HOST)
    service = FakeDashScope()
    with pytest.raises(AirflowFailException, match=r"max_cost: the estimate for this video is 300 credits, above"):
        operator_on(service, max_cost=150).execute(make_context(DictStore()))
    assert service.requests == []


# -- the unit in the result and the metrics --------------------------------------------------------------------


def test_a_dashscope_result_carries_its_cost_in_money_and_reads_back(
    connection: ConnectionSetter, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection(host=DS_HOST, extra=PRICES)
    emitted: list[tuple[str, Any, dict[str, str]]] = []
    monkeypatch.setattr(metrics, "_emit", lambda kind, name, *args, tags: emitted.append((name, args, tags)))
    result = operator_on(service := FakeDashScope(), resolution="720P", max_cost=1).execute(make_context(DictStore()))
    assert len(service.creates) == 1
    assert (result["credits_estimate"], result["cost_estimate"], result["cost_unit"]) == (None, 0.7, "USD")
    assert RenderRecord.from_result(result).cost == CostEstimate(amount=0.7, unit="USD")
    assert (metrics.COST_ESTIMATED, (0.7,), {"mode": "std", "conn_id": "happyhorse_default", "unit": "USD"}) in emitted
    assert not any(name == metrics.CREDITS_ESTIMATED for name, _, _ in emitted)


def test_a_credits_record_is_written_as_before_and_an_earlier_result_reads_in_credits() -> None:
    request = VideoRequest.parse({"prompt": "a", "duration": 5, "sound": False})
    record = RenderRecord.submitting(request, START, cost=CostEstimate(amount=200, unit="credits"))
    assert "cost" not in record.model_dump(mode="json")
    result = record.model_copy(update={"job_id": "n92abc123hh10"}).result()
    assert result["credits_estimate"] == 200
    assert "cost_unit" not in result
    assert RenderRecord.from_result(result).cost_estimate == CostEstimate(amount=200, unit="credits")


def test_the_lineage_facet_names_a_cost_in_money() -> None:
    from openlineage.client.serde import Serde

    from airflow_provider_happyhorse.lineage import run_facets

    request = VideoRequest.parse({"prompt": "a", "duration": 5, "resolution": "720P"})
    record = RenderRecord.submitting(request, START, cost=CostEstimate(amount=0.7, unit="USD"))
    facet = Serde.to_dict(run_facets(record.model_copy(update={"job_id": "t1"}))["happyhorse"])
    assert (facet.get("credits_estimate"), facet["cost_estimate"], facet["cost_unit"]) == (None, 0.7, "USD")
