"""The example DAGs parse with no import errors, and have the shapes the docs promise (docs/howto/)."""

from __future__ import annotations

import copy
import csv
import inspect
import sys
from pathlib import Path
from typing import Any

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
        "happyhorse_drafts_then_final",
        "happyhorse_edit_clip",
        "happyhorse_image_to_video",
        "happyhorse_multi_shot_story",
        "happyhorse_publish",
        "happyhorse_reference_to_video",
        "happyhorse_taskflow",
        "happyhorse_wait_for_job",
    } | ({"happyhorse_review"} if _has_hitl() else set())


def _has_hitl() -> bool:
    """Whether this Airflow has the human-in-the-loop operators (3.1+): the review example needs them."""
    from airflow_provider_happyhorse.ui.plugin import view_available

    return view_available()


@pytest.mark.skipif(not _has_hitl(), reason="Airflow 3.0 has no human-in-the-loop operators: no review example")
def test_the_review_example_asks_before_paying_and_publishes_only_approved_clips(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["happyhorse_review"]
    approve, render = dag.get_task("approve_spend"), dag.get_task("render")
    assert type(approve).__name__ == "ApprovalOperator"
    assert approve.downstream_task_ids == {"render"}  # "Reject" skips its direct downstream: the renders
    assert "price" in approve.upstream_task_ids
    assert "{{" in approve.body
    assert [type(n).__name__ for n in approve.notifiers] == ["ReviewChatNotifier"]
    review = dag.get_task("review_clip")
    assert review.partial_kwargs["options"] == ["approve", "regenerate", "reject"]
    assert "prompt" in review.params
    assert {"review_clip", "render"} <= dag.get_task("decide").upstream_task_ids
    assert type(dag.get_task("regenerate")).__name__ == type(render).__name__ == "MappedOperator"
    publish = dag.get_task("publish")
    assert [outlet.name for outlet in publish.outlets] == ["happyhorse_reviewed_clips"]
    assert publish.trigger_rule == "none_failed_min_one_success"  # runs when nothing was regenerated


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


def test_the_batch_budget_param_is_capped_at_what_the_dag_allows(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["happyhorse_batch_backfill"]
    param = dag.params.get_param("max_run_credits")
    assert param.value == 3000
    assert param.schema == {"type": "number", "minimum": 0, "maximum": 3000}  # the default is the ceiling
    assert param.description


def test_the_wait_example_defers_keeps_the_clip_and_takes_only_a_job_id(dagbag, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from airflow.exceptions import ParamValidationError

    monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", raising=False)
    dag = dagbag.dags["happyhorse_wait_for_job"]
    sensor = dag.get_task("wait_for_clip")
    assert dag.schedule is None  # it waits for a job someone else paid for: nothing to schedule
    assert type(sensor).__name__ == "HappyHorseJobSensor"
    assert sensor.deferrable is None  # as the deployment says, else deferred
    assert sensor._deferrable() is True  # no [operators] default_deferrable set: deferred
    assert sensor.job_id == "{{ params.job_id }}"
    assert sensor.output_path.endswith("/received/{{ params.job_id }}.mp4")
    param = dag.params.get_param("job_id")
    assert param.resolve("hh004beeb0cbf72fc6b") == "hh004beeb0cbf72fc6b"
    # A job id lands in the clip's path: a conf naming a path or nothing is refused when the run is created.
    for refused in ("../../etc/passwd", "a/b", "", "x" * 129):
        with pytest.raises(ParamValidationError):
            param.resolve(refused)


def merged(params: Any, conf: dict[str, Any]) -> Any:
    """A run's params: the DAG's with the trigger's conf over them (``deep_merge`` from Airflow 3.1 on)."""
    if hasattr(params, "deep_merge"):
        return params.deep_merge(conf)
    copied = copy.deepcopy(params)
    copied.update(conf)
    return copied


@pytest.mark.parametrize("budget", [3001, 1e9, -1, "5000", None, True])
def test_a_trigger_conf_cannot_raise_the_batch_budget(dagbag, budget: Any) -> None:  # type: ignore[no-untyped-def]
    from airflow.exceptions import ParamValidationError
    from airflow.sdk.definitions.param import process_params

    try:
        from airflow.serialization.serialized_objects import DagSerialization
    except ImportError:  # Airflow before 3.3
        from airflow.serialization.serialized_objects import SerializedDAG as DagSerialization  # type: ignore[no-redef]

    dag = dagbag.dags["happyhorse_batch_backfill"]
    # What the API server and `airflow dags trigger` do before creating the run (DAG.create_dagrun) ...
    serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert merged(serialized.params, {"max_run_credits": 100}).validate() == {"max_run_credits": 100}
    with pytest.raises(ParamValidationError, match="max_run_credits"):
        merged(serialized.params, {"max_run_credits": budget}).validate()
    # ... and what the task runner does again when a task starts.
    task = dag.get_task("plan_renders")
    assert process_params(dag, task, {"max_run_credits": 100}, suppress_exception=False)["max_run_credits"] == 100
    with pytest.raises(ParamValidationError, match="max_run_credits"):
        process_params(dag, task, {"max_run_credits": budget}, suppress_exception=False)


@pytest.mark.parametrize("budget", [3001, "5000", "lots", None, True, float("nan"), float("inf"), -1])
def test_plan_renders_refuses_a_budget_that_skipped_validation(dagbag, budget: Any) -> None:  # type: ignore[no-untyped-def]
    from airflow.providers.common.compat.sdk import AirflowFailException

    dag = dagbag.dags["happyhorse_batch_backfill"]
    rows = dag.get_task("load_prompts").python_callable(ds="2026-11-24")
    plan_renders = dag.get_task("plan_renders").python_callable
    assert plan_renders(rows, params={"max_run_credits": 3000}) == rows
    with pytest.raises(
        AirflowFailException, match="max_run_credits: the run's 6 renders are estimated at 2080 credits"
    ):
        plan_renders(rows, params={"max_run_credits": 100})
    with pytest.raises(AirflowFailException, match=r"^max_run_credits: must be a number of credits from 0 to 3000"):
        plan_renders(rows, params={"max_run_credits": budget})


def test_load_prompts_refuses_a_prompt_without_its_day(dagbag, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from airflow.providers.common.compat.sdk import AirflowFailException

    load_prompts = dagbag.dags["happyhorse_batch_backfill"].get_task("load_prompts").python_callable
    prompts = tmp_path / "prompts.csv"
    prompts.write_text(
        "slug,prompt,duration,mode,aspect_ratio\na,on {date},5,std,16:9\nb,every day the same,5,std,16:9\n"
    )
    monkeypatch.setitem(load_prompts.__globals__, "PROMPTS_FILE", prompts)
    with pytest.raises(AirflowFailException, match=r"rows \[1\] have no \{date\}"):
        load_prompts(ds="2026-11-24")


def test_a_trigger_conf_cannot_choose_the_batch_prompts_file(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["happyhorse_batch_backfill"]
    assert "prompts_file" not in dag.params
    load_prompts = dag.get_task("load_prompts").python_callable
    # The task takes neither params nor the run's conf: what it reads is the file beside the DAG.
    assert set(inspect.signature(load_prompts).parameters) == {"ds"}
    assert load_prompts.__globals__["PROMPTS_FILE"] == EXAMPLES / "prompts.csv"
    with open(EXAMPLES / "prompts.csv", newline="") as handle:
        shipped = list(csv.DictReader(handle))
    rows = load_prompts(ds="2026-11-24")
    assert [row["prompt"] for row in rows] == [row["prompt"].replace("{date}", "2026-11-24") for row in shipped]


def test_taskflow_dag_maps_the_decorated_function_over_three_prompts(dagbag) -> None:  # type: ignore[no-untyped-def]
    from airflow_provider_happyhorse.decorators.happyhorse import HappyHorseDecoratedOperator
    from airflow_provider_happyhorse.operators.fields import request_from_arguments

    dag = dagbag.dags["happyhorse_taskflow"]
    render = dag.get_task("render")
    assert dag.schedule is None  # renders only when triggered
    assert render.operator_class is HappyHorseDecoratedOperator
    prompts = render.op_kwargs_expand_input.value["prompt"]
    assert len(prompts) == 3
    assert "{{ ti.map_index }}" in render.partial_kwargs["output_path"]  # one clip file per mapped task
    # Each prompt's request is valid and within the task's max_credits, as written.
    for prompt in prompts:
        request = request_from_arguments(render.python_callable(prompt, ds="2026-11-24"))
        assert "2026-11-24" in (request.prompt or "")
        assert request.estimate_credits() <= render.partial_kwargs["max_credits"]


def test_publish_dag_is_scheduled_on_the_clip_alias(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["happyhorse_publish"]
    assert "happyhorse_clips" in str(dag.timetable.asset_condition)


def test_multi_shot_story_is_valid_before_rendering(dagbag) -> None:  # type: ignore[no-untyped-def]
    task = dagbag.dags["happyhorse_multi_shot_story"].get_task("story")
    # Rendered templates aside, the request already passes validation as written.
    request = task.video_request()
    assert request.multi_shots
    assert sum(shot.duration for shot in request.multi_prompt) == request.duration


# -- the DashScope examples (issue 23, item 8): each request is what its mode takes, and only DashScope offers it


def _dialects():  # type: ignore[no-untyped-def]
    from airflow_provider_happyhorse.core.dialects import DASHSCOPE, HAPPYHORSE

    return DASHSCOPE, HAPPYHORSE


def test_reference_example_names_each_character_of_its_sheet(dagbag) -> None:  # type: ignore[no-untyped-def]
    dashscope, happyhorse = _dialects()
    task = dagbag.dags["happyhorse_reference_to_video"].get_task("character_sheet")
    assert task.happyhorse_conn_id == "happyhorse_dashscope"
    request = task.video_request()
    assert request.effective_task == "reference"
    assert 1 <= len(request.image_urls or ()) <= 9
    # Every image is named by its place in the sheet, and the prompt names no image the sheet lacks.
    for place in range(1, len(request.image_urls or ()) + 1):
        assert f"character{place}" in (request.prompt or "")
    assert f"character{len(request.image_urls or ()) + 1}" not in (request.prompt or "")
    assert dashscope.body(request)["model"] == "happyhorse-1.0-r2v"
    assert dashscope.refusal(request) is None
    assert "'reference'" in str(happyhorse.refusal(request))


def test_drafts_are_720p_with_a_seed_each_and_the_final_is_the_chosen_seed_at_1080p(dagbag) -> None:  # type: ignore[no-untyped-def]
    from airflow.exceptions import ParamValidationError

    from airflow_provider_happyhorse.operators.fields import request_from_arguments

    dashscope, _ = _dialects()
    dag = dagbag.dags["happyhorse_drafts_then_final"]
    draft, final = dag.get_task("draft"), dag.get_task("final")
    assert type(draft).__name__ == "MappedOperator"
    seeds = draft.expand_input.value["seed"]
    assert len(seeds) == len(set(seeds)) >= 2
    assert draft.partial_kwargs["resolution"] == "720P"
    assert draft.partial_kwargs["happyhorse_conn_id"] == final.happyhorse_conn_id == "happyhorse_dashscope"
    assert "{{ ti.map_index }}" in draft.partial_kwargs["output_path"]  # one file per draft
    assert final.upstream_task_ids == {"draft"}
    assert [outlet.name for outlet in final.outlets] == ["happyhorse_dashscope_clips"]
    # The drafts' results, as the mapped task returns them: each names its request.
    drafts = [
        {
            "job_id": f"job-{seed}",
            "request": {
                "prompt": "p",
                "duration": 5,
                "aspect_ratio": "16:9",
                "seed": seed,
                "resolution": "720P",
                "model": "happyhorse-1.0/video",
            },
        }
        for seed in seeds
    ]
    for pick, seed in enumerate(seeds):
        request = request_from_arguments(final.python_callable(drafts, params={"pick": pick}))
        assert (request.seed, request.resolution, request.prompt, request.duration) == (seed, "1080P", "p", 5)
        assert dashscope.refusal(request) is None
    assert request_from_arguments(final.python_callable(drafts, params={})).seed == seeds[0]  # the first by default
    param = dag.params.get_param("pick")
    assert param.resolve(len(seeds) - 1) == len(seeds) - 1
    for refused in (len(seeds), -1, "first"):
        with pytest.raises(ParamValidationError):
            param.resolve(refused)


def test_the_edit_example_edits_the_clip_the_asset_event_names(dagbag) -> None:  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    from airflow_provider_happyhorse.models import VideoRequest

    dashscope, happyhorse = _dialects()
    dag = dagbag.dags["happyhorse_edit_clip"]
    assert "happyhorse_dashscope_clips" in str(dag.timetable.asset_condition)
    pick, edit = dag.get_task("clip_to_edit"), dag.get_task("edit")
    assert edit.upstream_task_ids == {"clip_to_edit"}
    assert edit.happyhorse_conn_id == "happyhorse_dashscope"

    def event(url: str | None) -> SimpleNamespace:
        return SimpleNamespace(extra={"job_id": "j", **({"video_url": url} if url else {})})

    events = {"alias": [event("https://oss.example/a.mp4"), event(None), event("https://oss.example/b.mp4")]}
    assert pick.python_callable(triggering_asset_events=events) == "https://oss.example/b.mp4"
    with pytest.raises(ValueError, match="No asset event with a video_url"):
        pick.python_callable(triggering_asset_events={})
    # The request once source_video is rendered from that task's XCom.
    request = VideoRequest.parse(
        {
            "prompt": edit.prompt,
            "task": edit.task,
            "source_video": "https://oss.example/b.mp4",
            "audio_setting": edit.audio_setting,
        }
    )
    body = dashscope.body(request)
    assert body["model"] == "happyhorse-1.0-video-edit"
    assert body["input"]["media"] == [{"type": "video", "url": "https://oss.example/b.mp4"}]
    assert "duration" not in body["parameters"]
    assert dashscope.refusal(request) is None
    assert "'edit'" in str(happyhorse.refusal(request))
