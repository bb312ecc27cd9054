"""The review helpers (airflow_provider_happyhorse.review): the cost table, a clip's text and link, the answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_happyhorse.exceptions import InvalidRequestError
from airflow_provider_happyhorse.review import clip_page_url, clip_review_body, cost_table, sort_reviews


def test_the_cost_table_prices_every_render_from_the_price_list_and_totals_them() -> None:
    table = cost_table(
        [
            {"prompt": "A | pipe\nand a line break", "duration": 5, "output_path": "file:///tmp/a.mp4"},
            {"prompt": "Silent pro", "duration": 8, "mode": "pro", "sound": False},
        ]
    )
    # 60 credits/s for std with sound, 54 for pro silent (the service's price list, docs/howto/operator.md).
    assert table.splitlines() == [
        "| # | prompt | mode | duration | sound | credits (est.) |",
        "|---:|---|---|---:|---|---:|",
        "| 0 | A \\| pipe and a line break | std | 5 s | yes | 300 |",
        "| 1 | Silent pro | pro | 8 s | no | 432 |",
        "| | **total: 2 renders** | | | | **732** |",
    ]


def test_the_cost_table_refuses_an_invalid_render_naming_its_row_and_field() -> None:
    with pytest.raises(InvalidRequestError, match=r"^render 1: Invalid HappyHorse request: duration: "):
        cost_table([{"prompt": "fine"}, {"prompt": "too long", "duration": 99}])


DS_HOST = "https://dashscope-intl.aliyuncs.com"
PRICES = {"price_per_second": {"720P": 0.14, "1080P": 0.28}, "currency": "USD"}


def test_the_cost_table_on_dashscope_is_in_the_connections_currency(connection: Any) -> None:
    """On a DashScope connection with a price table: each row in its currency (price x seconds at its resolution,
    1080P when none is given), the unit in the header, the edit at its longest (15 s) with the note saying so."""
    connection(host=DS_HOST, extra=PRICES, conn_id="ds")
    table = cost_table(
        [
            {"prompt": "a horse", "duration": 5, "resolution": "720P", "output_path": "file:///tmp/a.mp4"},
            {"prompt": "a horse at dusk", "duration": 3, "aspect_ratio": "4:3"},
            {"prompt": "make it night", "source_video": "https://cdn.example/a.mp4", "resolution": "720P"},
        ],
        happyhorse_conn_id="ds",
    )
    assert table.splitlines() == [
        "| # | prompt | resolution | duration | sound | USD (est.) |",
        "|---:|---|---|---:|---|---:|",
        "| 0 | a horse | 720P | 5 s | yes | 0.7 |",
        "| 1 | a horse at dusk | 1080P | 3 s | yes | 0.84 |",
        "| 2 | make it night | 720P | as its source | yes | 2.1 |",
        "| | **total: 3 renders** | | | | **3.64** |",
        "",
        "- render 2: at most: an edit lasts as long as its source video, up to 15 s",
    ]
    assert "credits" not in table


def test_the_cost_table_without_a_price_table_says_unknown_and_what_to_set(connection: Any) -> None:
    connection(host=DS_HOST, conn_id="ds")
    table = cost_table(
        [{"prompt": "a horse", "duration": 5}, {"prompt": "a cat", "duration": 4}], happyhorse_conn_id="ds"
    )
    lines = table.splitlines()
    assert lines[0] == "| # | prompt | resolution | duration | sound | cost (est.) |"
    assert lines[2:4] == [
        "| 0 | a horse | 1080P | 5 s | yes | unknown |",
        "| 1 | a cat | 1080P | 4 s | yes | unknown |",
    ]
    assert lines[4] == "| | **total: 2 renders** | | | | **unknown: 2 of 2 without an estimate** |"
    assert lines[6].startswith("- render 0: unknown, the connection sets no DashScope price table: set its extra")
    assert '"price_per_second"' in lines[6]


def test_the_cost_table_names_each_unit_when_rows_bill_in_more_than_one(connection: Any) -> None:
    """A row may name its own connection: credits and dollars are never added, an unknown row is not guessed."""
    connection(host=DS_HOST, extra=PRICES, conn_id="ds")
    connection(host=DS_HOST, conn_id="ds_unpriced")
    table = cost_table(
        [
            {"prompt": "on happyhorse.app", "duration": 5},
            {"prompt": "on model studio", "duration": 5, "resolution": "720P", "happyhorse_conn_id": "ds"},
            {"prompt": "no prices", "duration": 5, "happyhorse_conn_id": "ds_unpriced"},
        ]
    )
    lines = table.splitlines()
    assert lines[0] == "| # | prompt | mode / resolution | duration | sound | cost (est.) |"
    assert lines[2:5] == [
        "| 0 | on happyhorse.app | std | 5 s | yes | 300 credits |",
        "| 1 | on model studio | 720P | 5 s | yes | 0.7 USD |",
        "| 2 | no prices | 1080P | 5 s | yes | unknown |",
    ]
    assert lines[5] == (
        "| | **total: 3 renders** | | | | **unknown: 1 of 3 without an estimate, the others 300 credits + 0.7 USD** |"
    )


def test_the_cost_table_holds_each_row_to_its_connections_rules(connection: Any) -> None:
    """4:3 is DashScope's: on happyhorse.app (no connection named) the row is refused, never priced for approval."""
    with pytest.raises(InvalidRequestError, match=r"^render 0: .*aspect_ratio: happyhorse.app takes '16:9', '9:16'"):
        cost_table([{"prompt": "a horse", "aspect_ratio": "4:3"}])
    with pytest.raises(InvalidRequestError, match=r"^render 1: 'promt': not an argument of GenerateVideoOperator"):
        cost_table([{"prompt": "fine"}, {"promt": "typo"}])
    connection(host=DS_HOST, extra=PRICES, conn_id="ds")
    with pytest.raises(InvalidRequestError, match=r"^render 0: .*mode: mode 'pro' is not offered by Alibaba Cloud"):
        cost_table([{"prompt": "a horse", "mode": "pro"}], happyhorse_conn_id="ds")


def test_the_clip_page_url_is_the_views_clip_route_with_the_task_instance_key() -> None:
    url = clip_page_url("http://airflow.example:8080/", "dag", "manual__2026-12-01T00:00:00+00:00", "render", 1)
    assert url == (
        "http://airflow.example:8080/happyhorse/clip?dag_id=dag"
        "&run_id=manual__2026-12-01T00%3A00%3A00%2B00%3A00&task_id=render&map_index=1"
    )


def test_the_review_body_shows_the_poster_linking_to_the_clip_page() -> None:
    result = {"job_id": "j-1", "poster_path": "file:///c/0.jpg", "credits_estimate": 300, "request": {"prompt": "Sea"}}
    body = clip_review_body(result, base_url="", dag_id="d", run_id="r", task_id="render", map_index=0)
    page = "/happyhorse/clip?dag_id=d&run_id=r&task_id=render&map_index=0"
    assert (
        f"[![poster of job j-1](/happyhorse/files/poster?dag_id=d&run_id=r&task_id=render&map_index=0)]({page})" in body
    )
    assert f"[Watch the clip in the HappyHorse view]({page})" in body
    assert "**Prompt:** Sea" in body
    no_poster = clip_review_body(
        {**result, "poster_path": None}, base_url="", dag_id="d", run_id="r", task_id="t", map_index=0
    )
    assert "files/poster" not in no_poster


def _clip(index: int, prompt: str) -> dict[str, Any]:
    request = {"model": "happyhorse-1.0/video", "prompt": prompt, "mode": "std", "duration": 5, "sound": True}
    return {
        "dag_id": "d",
        "run_id": "r",
        "task_id": "render",
        "map_index": index,
        "job_id": f"j-{index}",
        "request": request,
    }


def _answer(option: str, prompt: str = "") -> dict[str, Any]:
    return {
        "chosen_options": [option],
        "params_input": {"prompt": prompt},
        "responded_by_user": {"id": "1", "name": "ann"},
    }


def test_answers_sort_clips_into_published_regenerated_and_kept_with_one_mark_each() -> None:
    clips = [_clip(0, "Sea"), _clip(1, "Boat"), _clip(2, "Sky"), _clip(3, "Hill"), _clip(4, "Road")]
    answers = [
        _answer("approve"),
        _answer("regenerate", "Boat, at night"),
        _answer("reject"),
        _answer("regenerate", "Hill"),  # the same prompt: the same request, which would not be rendered again
        None,  # not answered (the review task was skipped)
    ]
    reviewed = sort_reviews(clips, answers, regenerate_path="file:///out/{map_index}-again.mp4")
    assert [clip["job_id"] for clip in reviewed.approved] == ["j-0"]
    assert reviewed.regenerate == [
        {
            "prompt": "Boat, at night",
            "mode": "std",
            "duration": 5,
            "sound": True,
            "output_path": "file:///out/1-again.mp4",
        }
    ]
    assert [(mark["map_index"], mark["outcome"], mark["by"]) for mark in reviewed.marks] == [
        (0, "approved", "ann"),
        (1, "regenerated", "ann"),
        (2, "rejected", "ann"),
        (3, "kept: regenerate needs an edited prompt", "ann"),
        (4, "not answered", None),
    ]
    assert reviewed.marks[1]["new_prompt"] == "Boat, at night"
    assert {mark["task_id"] for mark in reviewed.marks} == {"render"}


def test_a_clip_without_its_answer_is_an_error_not_a_silent_skip() -> None:
    with pytest.raises(ValueError, match="zip"):
        sort_reviews([_clip(0, "Sea"), _clip(1, "Boat")], [_answer("approve")])


class MarksSession:
    """Answers the view's one query with the publishing task's marks, as the DB returns XCom values."""

    def __init__(self, *values: Any) -> None:
        self.values = values

    def execute(self, query: Any) -> list[tuple[Any]]:
        return [(value,) for value in self.values]


def test_the_view_reads_each_clips_mark_from_its_runs_review_xcom() -> None:
    from datetime import UTC, datetime

    from airflow_provider_happyhorse.core.record import RenderRecord
    from airflow_provider_happyhorse.ui.clips import Clip, ClipKey, review_marks

    shown = [ClipKey("d", "r", "render", 0), ClipKey("d", "r", "render", 1), ClipKey("d", "r", "regenerate", 0)]
    clips = [Clip(key, datetime(2026, 12, 1, tzinfo=UTC), RenderRecord(job_id="j")) for key in shown]
    marks = sort_reviews(
        [_clip(0, "Sea"), _clip(1, "Boat")], [_answer("approve"), _answer("regenerate", "Night")]
    ).marks
    other_run = {**marks[0], "run_id": "another", "outcome": "rejected"}
    # One value stored as JSON text (as some XCom backends keep it), one as parsed JSON, one that is not a list.
    found = review_marks(MarksSession(json.dumps(marks), [other_run, {"outcome": "no key"}], "junk"), clips)  # type: ignore[arg-type]
    assert {key: mark["outcome"] for key, mark in found.items()} == {shown[0]: "approved", shown[1]: "regenerated"}
    assert review_marks(MarksSession(), []) == {}  # type: ignore[arg-type]
