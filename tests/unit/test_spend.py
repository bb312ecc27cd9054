"""The view's spend per unit (issue 23, item 6): credits and each currency summed apart, never together."""

from __future__ import annotations

from airflow_provider_happyhorse.ui.clips import spend_of


def test_credits_and_money_are_summed_apart() -> None:
    spend = spend_of(
        [
            ("videos", "2026-01-01", "credits", 300.0, 1, 1),
            ("videos", "2026-01-02", "credits", 600.0, 2, 2),
            ("ads", "2026-01-02", "USD", 1.4, 2, 3),  # three DashScope clips, one with no price table
            ("ads", "2026-02-01", "USD", 0.7, 1, 1),
            ("ads", "2026-02-01", "EUR", None, 0, 2),  # no estimate known at all: counted as unknown only
        ]
    )
    # The keys of earlier releases are the credits' alone.
    assert (spend["total_credits"], spend["clips"]) == (900.0, 3)
    assert spend["per_day"] == {"videos": {"2026-01-01": 300.0, "2026-01-02": 600.0}}
    assert spend["per_month"] == {"videos": {"2026-01": 900.0}}
    assert list(spend["by_unit"]) == ["credits", "USD"]
    usd = spend["by_unit"]["USD"]
    assert (usd["total"], usd["clips"]) == (2.1, 3)
    assert usd["per_month"] == {"ads": {"2026-01": 1.4, "2026-02": 0.7}}
    assert spend["unknown_estimates"] == 3


def test_no_clip_is_zero_credits() -> None:
    spend = spend_of([])
    assert (spend["total_credits"], spend["clips"], spend["per_day"], spend["by_unit"]) == (0.0, 0, {}, {})


def test_a_clips_review_names_its_estimates_unit() -> None:
    from airflow_provider_happyhorse.review import clip_review_body

    def body(**estimate: object) -> str:
        result = {"job_id": "j1", "request": {"prompt": "a", "mode": "std", "duration": 5}, **estimate}
        return clip_review_body(result, base_url="", dag_id="d", run_id="r", task_id="render", map_index=0)

    assert "300 credits (est.)" in body(credits_estimate=300)
    assert "0.7 USD (est.)" in body(credits_estimate=None, cost_estimate=0.7, cost_unit="USD")
    assert "unknown money (est.)" in body(credits_estimate=None, cost_estimate=None, cost_unit="money")


def test_the_spend_query_groups_each_unit_apart_on_a_real_xcom_table() -> None:
    """The SQL of ``spend`` on Airflow's own XCom table (SQLite in memory): the JSON keys read per unit."""
    from datetime import UTC, datetime

    from airflow.models import import_all_models
    from airflow.models.xcom import XComModel
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from airflow_provider_happyhorse.ui.clips import spend

    import_all_models()
    engine = create_engine("sqlite://")
    XComModel.metadata.create_all(engine)
    results = [
        {"job_id": "a", "credits_estimate": 300},  # an earlier release's result: credits
        {"job_id": "b", "credits_estimate": None, "cost_estimate": 0.7, "cost_unit": "USD"},
        {"job_id": "c", "credits_estimate": None, "cost_estimate": None, "cost_unit": "money"},  # no price table
    ]
    with Session(engine) as session:
        for index, result in enumerate(results):
            for key, value in (("return_value", result), ("job_id", result["job_id"])):
                session.execute(
                    XComModel.__table__.insert().values(
                        dag_run_id=1,
                        task_id="render",
                        map_index=index,
                        key=key,
                        dag_id="d",
                        run_id="r",
                        value=value,
                        timestamp=datetime(2026, 1, 2, tzinfo=UTC),
                    )
                )
        got = spend(session, ["d"])
    assert (got["total_credits"], got["clips"], got["unknown_estimates"]) == (300.0, 1, 1)
    assert {unit: (part["total"], part["clips"]) for unit, part in got["by_unit"].items()} == {
        "credits": (300.0, 1),
        "USD": (0.7, 1),
    }
    assert got["by_unit"]["USD"]["per_day"] == {"d": {"2026-01-02": 0.7}}
