"""The example DAGs parse with no import errors, and have the shapes the README promises."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[2] / "dags" / "examples"


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.0 keeps it in airflow.models
        from airflow.models.dagbag import DagBag

    # Airflow puts the DAGs folder on sys.path; the examples share a settings module that way.
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield DagBag(dag_folder=str(EXAMPLES))
    finally:
        sys.path.remove(str(EXAMPLES))


def test_every_example_parses(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {
        "happyhorse_daily_content",
        "happyhorse_batch_backfill",
        "happyhorse_image_to_video",
        "happyhorse_multi_shot_story",
        "happyhorse_publish",
    }


def test_daily_dag_is_scheduled_and_stores_its_clip(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["happyhorse_daily_content"]
    task = dag.get_task("daily_clip")
    assert dag.schedule == "@daily"
    assert "{{ ds }}" in task.output_path
    assert dag.max_active_runs == 1  # runs do not overlap, so a run sees the clip of the run before
    assert task.if_exists == "skip"  # a day's clip already kept for the same request is not paid for again
    assert "{{" in task.prompt
    assert [outlet.name for outlet in task.outlets] == ["happyhorse_clips"]


def test_batch_dag_is_mapped_capped_and_does_not_catch_up(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["happyhorse_batch_backfill"]
    render = dag.get_task("render")
    assert dag.catchup is False  # unpausing renders one day, not every day since start_date
    assert dag.params["max_run_credits"] == 3000
    assert render.max_active_tis_per_dag == 4
    assert type(render).__name__ == "MappedOperator"
    assert (EXAMPLES / "prompts.csv").exists()


def test_publish_dag_is_scheduled_on_the_clip_alias(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["happyhorse_publish"]
    assert "happyhorse_clips" in str(dag.timetable.asset_condition)


def test_multi_shot_story_is_valid_before_rendering(dagbag) -> None:  # type: ignore[no-untyped-def]
    task = dagbag.dags["happyhorse_multi_shot_story"].get_task("story")
    # Rendered templates aside, the request already passes validation as written.
    request = task.video_request()
    assert request.multi_shots
    assert sum(shot.duration for shot in request.multi_prompt) == request.duration
