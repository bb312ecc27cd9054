"""Budgets: a run planned (every row validated, the total estimated) and refused before any render."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_happyhorse.budget import (
    BudgetExceededError,
    InvalidRowError,
    RunBudget,
    RunPlanError,
    plan_renders,
)
from airflow_provider_happyhorse.models import VideoRequest

# Estimates from the price list (credits per second): std with sound 60, std silent 40, pro with sound 80.
ROWS: list[dict[str, Any]] = [
    {"prompt": "a horse on a beach", "duration": 5, "output_path": "file:///tmp/a.mp4"},  # 300
    {"prompt": "rain on a city street", "duration": 4, "sound": False, "aspect_ratio": "9:16"},  # 160
    {"prompt": "boats at sunset", "duration": 6, "mode": "pro", "max_credits": 1000},  # 480
]
TOTAL = 300 + 160 + 480


def test_a_plan_within_its_limit_keeps_every_row_and_its_estimate() -> None:
    plan = plan_renders(ROWS, limit=TOTAL)  # the limit itself is allowed
    assert plan.total == TOTAL
    assert [render.estimate for render in plan.renders] == [300, 160, 480]
    assert plan.renders[1].request == VideoRequest(
        prompt="rain on a city street", duration=4, sound=False, aspect_ratio="9:16"
    )
    assert plan.operator_arguments() == ROWS  # what expand_kwargs gets: the rows as given
    assert plan.summary() == "3 renders, estimated at 940 credits (limit 940 credits)"


def test_a_plan_above_its_limit_is_refused_naming_both_figures() -> None:
    with pytest.raises(BudgetExceededError) as refused:
        plan_renders(ROWS, limit=939)
    assert str(refused.value).startswith(
        "limit: the run's 3 renders are estimated at 940 credits, above the limit of 939 credits. "
        "Nothing was submitted."
    )
    assert (refused.value.total, refused.value.limit) == (TOTAL, 939)
    assert isinstance(refused.value, AirflowFailException)  # no retries: a retry changes nothing


def test_one_bad_row_is_named_with_its_field_rule_and_value() -> None:
    rows = [*ROWS[:1], {"prompt": "too long a shot", "duration": 20}, *ROWS[1:]]
    with pytest.raises(InvalidRowError) as refused:
        plan_renders(rows, limit=100_000)
    assert refused.value.problems == {
        1: "Invalid HappyHorse request: duration: Input should be less than or equal to 15 (got 20)"
    }
    assert str(refused.value).startswith("rows[1]: Invalid HappyHorse request: duration:")
    assert "Nothing was submitted" in str(refused.value)


def test_every_bad_row_is_named_at_once() -> None:
    rows: list[Any] = [{"promt": "typo"}, ROWS[0], ["not", "a", "dict"], {"prompt": "x", "mode": "ultra"}]
    with pytest.raises(InvalidRowError) as refused:
        plan_renders(rows, limit=100_000)
    assert sorted(refused.value.problems) == [0, 2, 3]
    assert refused.value.problems[0] == "'promt': not an argument of GenerateVideoOperator"
    assert refused.value.problems[2] == "must be a dict of GenerateVideoOperator's keyword arguments, got list"
    assert "mode: Input should be 'std' or 'pro' (got 'ultra')" in refused.value.problems[3]


def test_an_invalid_row_is_refused_before_the_total_is_compared() -> None:
    with pytest.raises(InvalidRowError):
        plan_renders([{"prompt": ""}], limit=0)


@pytest.mark.parametrize("limit", [float("nan"), float("inf"), -1, True, "lots", None])
def test_a_limit_that_is_not_a_number_of_credits_is_refused(limit: Any) -> None:
    with pytest.raises(RunPlanError, match=r"^limit: must be a number of credits from 0 \(got "):
        plan_renders(ROWS, limit=limit)


def test_the_unit_in_messages_is_the_budgets() -> None:
    with pytest.raises(RunPlanError, match=r"^spend: must be a number of USD from 0 to 5, .* \(got 9\)"):
        RunBudget("spend", ceiling=5, unit="USD").limit({"spend": 9})


def test_a_run_budget_plans_under_the_runs_param() -> None:
    budget = RunBudget("max_run_credits", ceiling=1000)
    assert budget.plan_renders(ROWS, {"max_run_credits": 940}).total == TOTAL
    assert budget.plan_renders(ROWS, None).limit == 1000  # no params: the ceiling
    assert budget.plan_renders(ROWS, {}).limit == 1000
    with pytest.raises(BudgetExceededError, match=r"trigger with a higher max_run_credits \(at most 1000;"):
        budget.plan_renders(ROWS, {"max_run_credits": 500})


@pytest.mark.parametrize("value", [1001, 1e9, -1, float("nan"), "500", True])
def test_a_run_budget_refuses_a_limit_its_param_would_have_refused(value: Any) -> None:
    with pytest.raises(RunPlanError, match=r"^max_run_credits: must be a number of credits from 0 to 1000"):
        RunBudget("max_run_credits", ceiling=1000).plan_renders(ROWS, {"max_run_credits": value})


@pytest.mark.parametrize("value", [1000.5, 5000, -1, "500", None, True])
def test_the_param_maximum_is_the_ceiling_by_params_own_validation(value: Any) -> None:
    from airflow.exceptions import ParamValidationError
    from airflow.sdk import Param
    from airflow.sdk.definitions.param import ParamsDict

    param = RunBudget("max_run_credits", ceiling=1000).param()
    assert isinstance(param, Param)
    assert param.schema == {"type": "number", "minimum": 0, "maximum": 1000}
    assert param.resolve() == 1000  # the default is the ceiling
    assert param.resolve(value=250) == 250
    with pytest.raises(ParamValidationError):
        param.resolve(value=value)
    # As a DAG's params with a trigger's conf over them (what creating a run validates).
    params = ParamsDict({"max_run_credits": RunBudget("max_run_credits", ceiling=1000).param()})
    params["max_run_credits"] = 250
    assert params.validate() == {"max_run_credits": 250}
    with pytest.raises(ParamValidationError):
        params["max_run_credits"] = value


@pytest.mark.parametrize("ceiling", [float("nan"), -5, "3000"])
def test_a_budget_with_an_unusable_ceiling_is_refused_when_the_dag_is_parsed(ceiling: Any) -> None:
    with pytest.raises(RunPlanError, match=r"^RunBudget\('max_run_credits'\)\.ceiling: must be a number"):
        RunBudget("max_run_credits", ceiling=ceiling)


# -- in the dialect's unit (issue 23, item 6) -------------------------------------------------------------------

DASHSCOPE_PRICES = {"price_per_second": {"720P": 0.14, "1080P": 0.28}, "currency": "USD"}
DRAFTS: list[dict[str, Any]] = [
    {"prompt": "a horse", "duration": 5, "resolution": "720P"},  # 0.7 USD
    {"prompt": "a horse at dusk", "duration": 3},  # 1080P by default: 0.84 USD
]


def test_a_dashscope_run_is_planned_in_its_currency(connection: Any) -> None:
    connection(host="https://dashscope-intl.aliyuncs.com", extra=DASHSCOPE_PRICES)
    plan = RunBudget("spend", ceiling=5, unit="USD").plan_renders(
        DRAFTS, {"spend": 2}, happyhorse_conn_id="happyhorse_default"
    )
    assert [render.estimate for render in plan.renders] == [0.7, 0.84]
    assert plan.summary() == "2 renders, estimated at 1.54 USD (limit 2 USD)"
    with pytest.raises(BudgetExceededError, match=r"estimated at 1\.54 USD, above the limit of 1 USD"):
        plan_renders(DRAFTS, limit=1, unit="USD", happyhorse_conn_id="happyhorse_default")


def test_a_dashscope_run_under_a_credits_budget_or_without_prices_is_refused_naming_the_way_out(
    connection: Any,
) -> None:
    connection(host="https://dashscope-intl.aliyuncs.com", extra=DASHSCOPE_PRICES)
    with pytest.raises(InvalidRowError) as raised:
        RunBudget("spend", ceiling=5000).plan_renders(DRAFTS, None, happyhorse_conn_id="happyhorse_default")
    assert "bills in USD, but spend counts credits: give the budget unit='USD'" in str(raised.value)
    assert "Nothing was submitted" in str(raised.value)
    connection(host="https://dashscope-intl.aliyuncs.com")
    with pytest.raises(InvalidRowError) as raised:
        plan_renders(DRAFTS, limit=5, unit="USD", happyhorse_conn_id="happyhorse_default")
    assert "rows[0]: the estimate is unknown" in str(raised.value)
    assert "price_per_second" in str(raised.value)


def test_a_row_names_its_own_connection_and_a_missing_one_is_refused(connection: Any) -> None:
    connection(host="https://dashscope-intl.aliyuncs.com", extra=DASHSCOPE_PRICES, conn_id="ds")
    rows = [{**DRAFTS[0], "happyhorse_conn_id": "ds"}]
    assert plan_renders(rows, limit=1, unit="USD").total == 0.7
    with pytest.raises(RunPlanError, match="Nothing was submitted"):
        plan_renders([{**DRAFTS[0], "happyhorse_conn_id": "nowhere"}], limit=1, unit="USD")


# -- each row held to its connection's dialect (issue 23, item 2) ---------------------------------------------------


def test_a_row_is_held_to_its_connections_rules_before_the_run_is_planned(connection: Any) -> None:
    """4:3 and a 3,000-character prompt are DashScope's; on happyhorse.app (or no connection named: its credits
    and rules) they are refused naming the row, the field, the rule and the way out."""
    wide = {"prompt": "a horse", "duration": 3, "aspect_ratio": "4:3", "resolution": "720P"}
    long = {"prompt": "p" * 3000, "duration": 3, "resolution": "720P"}
    connection(host="https://dashscope-intl.aliyuncs.com", extra=DASHSCOPE_PRICES, conn_id="ds")
    plan = plan_renders([wide, long], limit=1, unit="USD", happyhorse_conn_id="ds")
    assert [render.request.aspect_ratio for render in plan.renders] == ["4:3", "16:9"]
    assert plan.total == 0.84
    connection(conn_id="hh")
    for conn_id in ("hh", None):
        rows = [{**row, "resolution": None} for row in (wide, long)]
        with pytest.raises(InvalidRowError) as refused:
            plan_renders(
                [{k: v for k, v in row.items() if v is not None} for row in rows],
                limit=10_000,
                happyhorse_conn_id=conn_id,
            )
        assert sorted(refused.value.problems) == [0, 1]
        assert "aspect_ratio: happyhorse.app takes '16:9', '9:16' or '1:1' (got '4:3')" in refused.value.problems[0]
        assert (
            "prompt: happyhorse.app takes at most 2500 characters (got 3,000 characters)" in refused.value.problems[1]
        )
