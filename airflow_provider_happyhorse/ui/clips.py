"""
The clips the view shows, read from Airflow's metadata DB: the result XComs of GenerateVideoOperator and
HappyHorseJobSensor tasks (a task instance that also has a ``job_id`` XCom), the spend they estimate,
and the renders still waiting in the triggerer. Only DAGs the caller may read are ever queried; what a
row may serve (its clip, its poster) is the path recorded in that task instance's own result.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_happyhorse.constants import RESULT_URL_LIFETIME, XCOM_JOB_ID_KEY, XCOM_RESULT_KEY
from airflow_provider_happyhorse.core.cost import CREDITS, rounded
from airflow_provider_happyhorse.core.progress import RenderEstimate
from airflow_provider_happyhorse.core.record import RenderRecord

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

AVAILABILITY = ("stored", "temporary", "expired")
TRIGGER_CLASSPATH = "airflow_provider_happyhorse.triggers.happyhorse.HappyHorseJobTrigger"


@dataclass(frozen=True)
class ClipKey:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int


@dataclass(frozen=True)
class Clip:
    key: ClipKey
    made_at: datetime  # when the result was recorded
    record: RenderRecord  # the task's result, read through the render record

    @property
    def expires_at(self) -> datetime | None:
        """When the temporary result URL stops answering (about a day after the job finished)."""
        finished = self.record.finished_at
        return None if finished is None else finished + RESULT_URL_LIFETIME

    def availability(self, now: datetime) -> str:
        if self.record.stored is not None:
            return "stored"
        expires = self.expires_at
        return "temporary" if expires is not None and now < expires else "expired"

    def as_row(self, now: datetime) -> dict[str, Any]:
        record, request = self.record, self.record.request
        media = None if record.stored is None else record.stored.media
        prompt = None
        if request is not None:
            prompt = request.prompt or " / ".join(shot.prompt for shot in request.multi_prompt or [])
        return {
            **self.key.__dict__,
            "made_at": self.made_at.isoformat(),
            "job_id": record.job_id,
            "availability": self.availability(now),
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
            "prompt": prompt,
            "mode": None if request is None else request.mode,
            "duration": media.duration if media is not None else None if request is None else request.duration,
            "sound": media.has_audio if media is not None else None if request is None else request.sound,
            "credits_estimate": record.credits_estimate,
            # The estimate in its unit (credits or a currency; amount None: unknown, no price table).
            "cost_estimate": None if record.cost_estimate is None else record.cost_estimate.amount,
            "cost_unit": None if record.cost_estimate is None else record.cost_estimate.unit,
            "verified": None if record.stored is None else record.stored.verified,
            "has_poster": record.stored is not None and record.stored.poster_path is not None,
            "video_url": record.video_url,
        }


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _result_rows(permitted: Iterable[str], dag_ids: list[str] | None, since: datetime | None, until: datetime | None):  # type: ignore[no-untyped-def]
    """The result XComs of our tasks (those with a ``job_id`` XCom too) in the permitted DAGs, newest first."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import exists, select
    from sqlalchemy.orm import aliased

    marker = aliased(XComModel)
    allowed = set(permitted) if dag_ids is None else set(permitted) & set(dag_ids)
    query = (
        select(XComModel)
        .where(XComModel.key == XCOM_RESULT_KEY, XComModel.dag_id.in_(sorted(allowed)))
        .where(
            exists().where(
                marker.dag_run_id == XComModel.dag_run_id,
                marker.task_id == XComModel.task_id,
                marker.map_index == XComModel.map_index,
                marker.key == XCOM_JOB_ID_KEY,
            )
        )
    )
    if since is not None:
        query = query.where(XComModel.timestamp >= since)
    if until is not None:
        query = query.where(XComModel.timestamp < until)
    return query.order_by(XComModel.timestamp.desc(), XComModel.dag_run_id, XComModel.task_id, XComModel.map_index)


def _value(raw: Any) -> Any:
    """An XCom value as stored: JSON the DB layer parsed, or JSON text when it was stored serialized."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _clip(row: Any) -> Clip | None:
    """A row's clip, when its value reads as a render's result (``RenderRecord.from_result``)."""
    from pydantic import ValidationError

    value = _value(row.value)
    if not isinstance(value, dict):
        return None
    try:
        record = RenderRecord.from_result(value)
    except ValidationError:
        return None
    return Clip(ClipKey(row.dag_id, row.run_id, row.task_id, row.map_index), _utc(row.timestamp), record)


def _columns(query: Any, *names: str) -> Any:
    from airflow.models.xcom import XComModel

    return query.with_only_columns(*(getattr(XComModel, name) for name in names))


_SHOWN = ("dag_id", "run_id", "task_id", "map_index", "timestamp", "value")


def list_clips(
    session: Session,
    permitted: Iterable[str],
    *,
    dag_ids: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    availability: str | None = None,
    offset: int = 0,
    limit: int = 24,
    now: datetime,
) -> tuple[list[Clip], int]:
    """A page of clips, newest first, and how many match. ``availability`` filters on stored/temporary/expired."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import func, select, tuple_

    query = _result_rows(permitted, dag_ids, since, until)
    if availability is not None:
        query = query.where(_availability_clause(availability, now))
    keys = _columns(query, "dag_run_id", "task_id", "map_index")
    total = session.scalar(select(func.count()).select_from(keys.order_by(None).subquery())) or 0
    # The page's keys first (a narrow sort), then only their values.
    page_keys = [tuple(row) for row in session.execute(keys.offset(offset).limit(limit))]
    if not page_keys:
        return [], int(total)
    key_columns = tuple_(XComModel.dag_run_id, XComModel.task_id, XComModel.map_index)
    rows = session.execute(_columns(query, *_SHOWN).where(key_columns.in_(page_keys)))
    return [clip for row in rows if (clip := _clip(row))], int(total)


def get_clip(session: Session, key: ClipKey) -> Clip | None:
    """One task instance's clip (its own result XCom), whatever the caller may read: check that first."""
    from airflow.models.xcom import XComModel

    query = _columns(_result_rows([key.dag_id], None, None, None), *_SHOWN).where(
        XComModel.run_id == key.run_id, XComModel.task_id == key.task_id, XComModel.map_index == key.map_index
    )
    row = session.execute(query).first()
    return None if row is None else _clip(row)


def review_marks(session: Session, clips: Iterable[Clip]) -> dict[ClipKey, dict[str, Any]]:
    """
    Each clip's review outcome, where a run recorded one: the marks a publishing task pushed under
    ``review.REVIEW_XCOM_KEY`` in the clip's own run (a list of ``{dag_id, run_id, task_id, map_index,
    outcome, ...}``). Only the runs of ``clips`` are read: the caller may read them already.
    """
    from airflow.models.xcom import XComModel
    from sqlalchemy import select, tuple_

    from airflow_provider_happyhorse.review import REVIEW_XCOM_KEY

    wanted = {clip.key for clip in clips}
    runs = sorted({(key.dag_id, key.run_id) for key in wanted})
    if not runs:
        return {}
    query = select(XComModel.value).where(
        XComModel.key == REVIEW_XCOM_KEY, tuple_(XComModel.dag_id, XComModel.run_id).in_(runs)
    )
    marks: dict[ClipKey, dict[str, Any]] = {}
    for (raw,) in session.execute(query):
        for mark in _value(raw) if isinstance(_value(raw), list) else []:
            try:
                key = ClipKey(mark["dag_id"], mark["run_id"], mark["task_id"], int(mark["map_index"]))
            except (KeyError, TypeError, ValueError):
                continue
            if key in wanted:
                marks[key] = mark
    return marks


def _availability_clause(availability: str, now: datetime) -> Any:
    """
    The availability filter in SQL, on the result's JSON: stored (a ``stored_path``), temporary (not
    stored, finished less than a day ago: ISO-8601 UTC times, which sort as text) or expired.
    """
    from airflow.models.xcom import XComModel
    from sqlalchemy import and_, or_

    stored = XComModel.value["stored_path"].as_string()
    finished = XComModel.value["finished_at"].as_string()
    cutoff = (now - RESULT_URL_LIFETIME).isoformat()
    if availability == "stored":
        return stored.is_not(None)
    if availability == "temporary":
        return and_(stored.is_(None), finished >= cutoff)
    return and_(stored.is_(None), or_(finished.is_(None), finished < cutoff))


def spend(
    session: Session,
    permitted: Iterable[str],
    *,
    dag_ids: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """
    Estimated spend per DAG per day and per month, per unit (credits, or a DashScope connection's currency:
    never added together), over the same filter as the list. ``total_credits``, ``clips``, ``per_day`` and
    ``per_month`` are the credits' (the keys of earlier releases); ``by_unit`` has every unit's;
    ``unknown_estimates`` counts clips billed in money whose connection set no price table.
    """
    from sqlalchemy import func, select

    rows = _result_rows(permitted, dag_ids, since, until).order_by(None).subquery()
    day = func.date(rows.c.timestamp)
    credits = rows.c.value["credits_estimate"].as_float()
    in_credits = (
        select(rows.c.dag_id, day, func.sum(credits), func.count(credits))
        .where(credits.is_not(None))
        .group_by(rows.c.dag_id, day)
    )
    unit = rows.c.value["cost_unit"].as_string()
    money = rows.c.value["cost_estimate"].as_float()
    in_money = (
        select(rows.c.dag_id, day, unit, func.sum(money), func.count(money), func.count())
        .where(unit.is_not(None))
        .group_by(rows.c.dag_id, day, unit)
    )
    groups: list[tuple[str, str, str, float | None, int, int]] = [
        (dag_id, str(date), CREDITS, amount, count, count)
        for dag_id, date, amount, count in session.execute(in_credits)
    ]
    groups += [(dag_id, str(date), *rest) for dag_id, date, *rest in session.execute(in_money)]
    return spend_of(groups)


def spend_of(groups: Iterable[tuple[str, str, str, float | None, int, int]]) -> dict[str, Any]:
    """
    :func:`spend` from its grouped rows: (DAG, day, unit, sum of the known estimates, how many are known,
    how many clips in all); a unit's amounts are summed only with the same unit's.
    """
    per_day: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    per_month: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(float)))
    totals: dict[str, float] = defaultdict(float)
    clips: dict[str, int] = defaultdict(int)
    unknown = 0
    for dag_id, date, unit, amount, known, count in groups:
        unknown += count - known
        if not known:
            continue
        per_day[unit][dag_id][date] = float(amount or 0)
        per_month[unit][dag_id][date[:7]] += float(amount or 0)
        totals[unit] += float(amount or 0)
        clips[unit] += known
    by_unit = {
        unit: {
            "total": rounded(totals[unit]),
            "clips": clips[unit],
            "per_day": {dag: dict(sorted(days.items())) for dag, days in sorted(per_day[unit].items())},
            "per_month": {
                dag: {month: rounded(amount) for month, amount in sorted(months.items())}
                for dag, months in sorted(per_month[unit].items())
            },
        }
        for unit in sorted(totals, key=lambda name: (name != CREDITS, name))
    }
    empty: dict[str, Any] = {"total": 0.0, "clips": 0, "per_day": {}, "per_month": {}}
    in_credits = by_unit.get(CREDITS, empty)
    return {
        "total_credits": in_credits["total"],
        "clips": in_credits["clips"],
        "per_day": in_credits["per_day"],
        "per_month": in_credits["per_month"],
        "by_unit": by_unit,
        "unknown_estimates": unknown,
    }


def in_flight(session: Session, permitted: Iterable[str]) -> list[dict[str, Any]]:
    """The renders waiting in the triggerer: deferred task instances on our trigger, oldest first."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from sqlalchemy import select

    query = (
        select(TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.task_id, TaskInstance.map_index, Trigger)
        .join(Trigger, Trigger.id == TaskInstance.trigger_id)
        .where(
            TaskInstance.state == "deferred",
            Trigger.classpath == TRIGGER_CLASSPATH,
            TaskInstance.dag_id.in_(sorted(set(permitted))),
        )
    )
    renders = []
    now = datetime.now(UTC)
    for dag_id, run_id, task_id, map_index, trigger in session.execute(query):
        try:
            record = RenderRecord.from_trigger_kwargs(trigger.kwargs)
        except (KeyError, TypeError, ValueError):  # not a trigger row this release or an earlier one made
            continue
        submitted = record.submitted_at
        # The estimate the task log says (core.progress); a sensor's trigger knows no request, so none.
        estimate = None
        if submitted is not None and record.request is not None:
            estimate = RenderEstimate.of_request(record.request, submitted)
        renders.append(
            {
                "dag_id": dag_id,
                "run_id": run_id,
                "task_id": task_id,
                "map_index": map_index,
                "job_id": record.job_id,
                # A sensor's trigger knows when the sensor began waiting, not when the job was submitted.
                "submitted_at": None if submitted is None else submitted.isoformat(),
                "waiting_since": None if record.started_at is None else record.started_at.isoformat(),
                "expected_finish": None if estimate is None else estimate.expected_finish.isoformat(timespec="seconds"),
                "progress": None if estimate is None else estimate.describe(now),
                "deadline": None if record.deadline is None else record.deadline.isoformat(),
            }
        )
    return sorted(renders, key=lambda render: str(render["waiting_since"]))
