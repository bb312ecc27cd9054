"""
Review before and after paying, with Airflow's human-in-the-loop operators (Airflow 3.1 or newer).

1. **Before paying**, ``approve_spend`` shows the run's renders and their estimated credits as a table.
   "Reject" skips every render: nothing is submitted or paid.
2. **After rendering**, ``review_clip`` asks about each clip (its poster, and a link to its page in the
   HappyHorse view): "approve", "regenerate" (type an edited prompt in the form: a new request, paid
   once, reviewed again in ``review_again``) or "reject".
3. ``publish`` announces only the approved clips, one asset event each on the
   ``happyhorse_reviewed_clips`` alias, for the DAGs scheduled on it. Rejected clips stay stored; every
   clip's outcome is shown on its row in the HappyHorse view.

A notifier tells a chat where to answer (``ReviewChatNotifier``: any ``BaseNotifier``, e.g. Slack's, works
the same way). Since Airflow 3.3 a task waiting for an answer holds no worker, triggerer or pool slot.
On Airflow 3.0 this file defines no DAG and says why in its log: the HITL operators need 3.1.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from typing import Any

import httpx
from airflow import __version__ as AIRFLOW_VERSION
from packaging.version import Version

log = logging.getLogger(__name__)
# The human-in-the-loop operators came with Airflow 3.1; on 3.0 importing them raises.
HITL_AVAILABLE = Version(AIRFLOW_VERSION).release[:2] >= (3, 1)

if not HITL_AVAILABLE:
    log.info("happyhorse_review needs Airflow 3.1 or newer (its human-in-the-loop operators): not defined here")
else:
    from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
    from airflow.sdk import DAG, AssetAlias, BaseNotifier, Param, task
    from happyhorse_example_settings import OUTPUT_ROOT, POLLING

    from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
    from airflow_provider_happyhorse.review import (
        PROMPT_PARAM,
        REVIEW_OPTIONS,
        REVIEW_XCOM_KEY,
        SECOND_REVIEW_OPTIONS,
        clip_review_body,
        cost_table,
        sort_reviews,
    )

    RENDERS = [
        {"prompt": "A lighthouse at dusk, waves below, slow aerial orbit.", "duration": 5, "mode": "std"},
        {"prompt": "A paper boat drifting down a rainy street gutter, close-up.", "duration": 5, "mode": "std"},
    ]
    MAX_CLIP_CREDITS = 1000

    # [START howto_review_notifier]
    class ReviewChatNotifier(BaseNotifier):
        """
        Tells a chat that a review waits, with the link to answer it. Posts ``{"text": ...}`` to the
        webhook in ``HAPPYHORSE_REVIEW_WEBHOOK`` when set (Slack, Mattermost and Teams take that shape);
        always writes the message to the task log.
        """

        template_fields = ("message",)

        def __init__(self, message: str) -> None:
            super().__init__()
            self.message = message

        def notify(self, context: Any) -> None:
            try:
                link = HITLOperator.generate_link_to_ui_from_context(context=context)
            except ValueError:  # no [api] base_url: the message still goes out
                link = "(set [api] base_url for a link)"
            text = f"{self.message}: {link}"
            log.info("Review notice: %s", text)
            webhook = os.environ.get("HAPPYHORSE_REVIEW_WEBHOOK")
            if webhook:
                httpx.post(webhook, json={"text": text}, timeout=10).raise_for_status()

    # [END howto_review_notifier]

    def _base_url() -> str:
        from airflow.configuration import conf

        return conf.get("api", "base_url", fallback="") or ""

    with DAG(
        dag_id="happyhorse_review",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["happyhorse", "example", "review"],
        doc_md=__doc__,
    ):
        # [START howto_review_before_paying]
        @task
        def plan(run_id: str | None = None) -> list[dict[str, Any]]:
            """The run's renders (the operator's keyword arguments), each stored under the run."""
            return [
                {**render, "output_path": f"{OUTPUT_ROOT}/review/{run_id}/{i}.mp4"} for i, render in enumerate(RENDERS)
            ]

        @task
        def price(renders: list[dict[str, Any]]) -> str:
            """The approval's body: every render validated and priced, on the connection it renders on."""
            return cost_table(list(renders), happyhorse_conn_id="happyhorse_default")

        renders = plan()
        approve_spend = ApprovalOperator(
            task_id="approve_spend",
            subject="Pay for {{ ti.xcom_pull(task_ids='plan') | length }} HappyHorse renders?",
            body="{{ ti.xcom_pull(task_ids='price') }}",
            notifiers=[ReviewChatNotifier("HappyHorse: a spend waits for approval")],
        )
        render = GenerateVideoOperator.partial(task_id="render", max_credits=MAX_CLIP_CREDITS, **POLLING).expand_kwargs(
            renders
        )
        price(renders) >> approve_spend >> render  # "Reject" skips render: nothing is submitted
        # [END howto_review_before_paying]

        # [START howto_review_after_rendering]
        @task
        def ask(results: list[dict[str, Any]], clip_task: str, run_id: str | None = None) -> list[dict[str, Any]]:
            """One review per clip: its subject and body (poster, facts, link to its page in the view)."""
            return [
                {
                    "subject": f"Review clip {index}: {(result.get('request') or {}).get('prompt', '')[:60]}",
                    "body": clip_review_body(
                        result,
                        base_url=_base_url(),
                        dag_id="happyhorse_review",
                        run_id=str(run_id),
                        task_id=clip_task,
                        map_index=index,
                    ),
                }
                for index, result in enumerate(results)
            ]

        # Optional (null allowed), so "approve" and "reject" need no prompt; "regenerate" uses it.
        prompt_param = Param(
            None,
            type=["null", "string"],
            maxLength=2500,
            title="Edited prompt",
            description="For 'regenerate' only: the new prompt (a new request, paid once).",
        )
        review_clip = HITLOperator.partial(
            task_id="review_clip",
            options=REVIEW_OPTIONS,
            params={PROMPT_PARAM: prompt_param},
            notifiers=[ReviewChatNotifier("HappyHorse: a clip waits for review")],
        ).expand_kwargs(ask.override(task_id="ask_review")(render.output, "render"))

        def _keyed(results: list[dict[str, Any]], task_id: str, run_id: str) -> list[dict[str, Any]]:
            keys = {"dag_id": "happyhorse_review", "run_id": run_id, "task_id": task_id}
            return [{**result, **keys, "map_index": index} for index, result in enumerate(results or [])]

        @task
        def decide(
            results: list[dict[str, Any]], answers: list[dict[str, Any]], run_id: str | None = None
        ) -> list[dict[str, Any]]:
            """The clips to render again (an edited prompt: a new request, stored beside the old clip)."""
            path = f"{OUTPUT_ROOT}/review/{run_id}/{{map_index}}-regenerated.mp4"
            return sort_reviews(
                _keyed(list(results), "render", str(run_id)), list(answers), regenerate_path=path
            ).regenerate

        regenerations = decide(render.output, review_clip.output)
        regenerate = GenerateVideoOperator.partial(
            task_id="regenerate", max_credits=MAX_CLIP_CREDITS, **POLLING
        ).expand_kwargs(regenerations)
        review_again = HITLOperator.partial(task_id="review_again", options=SECOND_REVIEW_OPTIONS).expand_kwargs(
            ask.override(task_id="ask_review_again")(regenerate.output, "regenerate")
        )

        @task(outlets=[AssetAlias("happyhorse_reviewed_clips")], trigger_rule="none_failed_min_one_success")
        def publish(
            results: list[dict[str, Any]],
            answers: list[dict[str, Any]],
            new_results: list[dict[str, Any]] | None,
            new_answers: list[dict[str, Any]] | None,
            run_id: str | None = None,
            ti: Any = None,
            outlet_events: Any = None,
        ) -> list[str]:
            """One asset event per approved clip; every clip's outcome recorded for the view."""
            from airflow.sdk import Asset

            first = sort_reviews(_keyed(list(results), "render", str(run_id)), list(answers))
            second = sort_reviews(_keyed(list(new_results or []), "regenerate", str(run_id)), list(new_answers or []))
            published = []
            for clip in first.approved + second.approved:
                uri = clip.get("stored_path") or clip["video_url"]
                extra = {key: clip.get(key) for key in ("job_id", "credits_estimate", "stored_sha256", "poster_path")}
                extra.update(
                    prompt=(clip.get("request") or {}).get("prompt"),
                    task_id=clip["task_id"],
                    map_index=clip["map_index"],
                )
                outlet_events[AssetAlias("happyhorse_reviewed_clips")].add(Asset(uri), extra=extra)
                published.append(uri)
            ti.xcom_push(key=REVIEW_XCOM_KEY, value=first.marks + second.marks)
            return published

        publish(render.output, review_clip.output, regenerate.output, review_again.output)
        # [END howto_review_after_rendering]
