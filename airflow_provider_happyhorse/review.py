"""
Human review of a run's renders with Airflow's human-in-the-loop operators (Airflow 3.1+): what the person
is shown and what their answers mean, tested as data: no I/O and no Airflow import at module level.
:func:`cost_table` alone prices through ``budget`` (imported when it is called), which reads the renders'
connection through Airflow when one is named.

- Before paying: :func:`cost_table`, the run's renders and their estimated cost as a markdown table, in the
  connection's unit (credits, or a DashScope connection's currency), every row validated first as the operator
  would, the body of an ``ApprovalOperator``.
- After rendering: :func:`clip_review_body`, a clip's poster, facts and a link to its page in the
  HappyHorse view (:func:`clip_page_url`), the body of one mapped ``HITLOperator`` per clip with the
  options in :data:`REVIEW_OPTIONS`; :func:`sort_reviews` turns the answers into the clips to publish, the
  requests to render again (an edited prompt: a new request, paid once) and one mark per clip.
- The marks (:data:`REVIEW_XCOM_KEY`, pushed by the publishing task) are what the view shows on each
  clip's row (``ui.clips.review_marks``).

See docs/howto/review.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from airflow_provider_happyhorse.constants import UI_URL_PREFIX
from airflow_provider_happyhorse.core.cost import (
    CREDITS,
    DASHSCOPE_DEFAULT_RESOLUTION,
    UNKNOWN_CURRENCY,
    CostEstimate,
)
from airflow_provider_happyhorse.exceptions import InvalidRequestError
from airflow_provider_happyhorse.models import VideoRequest

APPROVE, REGENERATE, REJECT = "approve", "regenerate", "reject"
REVIEW_OPTIONS = [APPROVE, REGENERATE, REJECT]
# A regenerated clip is reviewed once more: approve or reject (a second regeneration is a new run).
SECOND_REVIEW_OPTIONS = [APPROVE, REJECT]
# The HITL form's field for the edited prompt ("regenerate" needs it).
PROMPT_PARAM = "prompt"
# The XCom key under which the publishing task records every clip's review outcome (read by the view).
REVIEW_XCOM_KEY = "happyhorse_review"


def _cell(value: Any) -> str:
    """Text safe inside one markdown table cell (no pipe or line break ends it)."""
    return " ".join(str(value).split()).replace("|", "\\|")


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cost_table(renders: Sequence[Mapping[str, Any]], *, happyhorse_conn_id: str | None = None) -> str:
    """
    The renders (each the operator's keyword arguments) and their estimated cost as a markdown table, with the
    total, in the unit a run's plan and budget count (``budget.priced_row``, ``core.cost``): credits on
    happyhorse.app, the currency of the connection's ``price_per_second`` table on Alibaba Cloud Model Studio.
    The unit is named in the cost column's header (in each cell when the rows bill in more than one unit).
    A render whose estimate is unknown (a DashScope connection with no price table) shows "unknown", the total
    says how many are unknown and what the others add up to, and a note under the table says why and what to
    set. Every row is validated as the operator would before paying, its connection's rules included: an
    invalid one raises ``InvalidRequestError`` naming its row and field, so a person is never asked to approve it.

    :param happyhorse_conn_id: the connection the renders are made on, unless a row names its own
        ``happyhorse_conn_id``. None: happyhorse.app's rules and credits, as in ``budget.plan_renders``.
    """
    # Imported here: estimating on a connection reads it through Airflow; the rest of this module is plain data.
    from airflow_provider_happyhorse.budget import priced_row

    settings: dict[str, Any] = {}
    priced: list[tuple[VideoRequest, CostEstimate]] = []
    for index, render in enumerate(renders):
        try:
            priced.append(priced_row(render, happyhorse_conn_id, settings))
        except InvalidRequestError as error:
            raise InvalidRequestError(f"render {index}: {error}") from None
    units = list(dict.fromkeys(cost.unit for _, cost in priced))
    # One unit, and a real one ("money" is a DashScope estimate without a currency): the header names it.
    header_unit = units[0] if len(units) == 1 and units[0] != UNKNOWN_CURRENCY else None
    credits_only = units == [CREDITS]
    tier = "mode" if credits_only else "resolution" if CREDITS not in units else "mode / resolution"
    lines = [
        f"| # | prompt | {tier} | duration | sound | {header_unit or 'cost'} (est.) |",
        "|---:|---|---|---:|---|---:|",
    ]
    totals: dict[str, list[float]] = {}
    notes: list[str] = []
    for index, (request, cost) in enumerate(priced):
        prompt = request.prompt or " / ".join(shot.prompt for shot in request.multi_prompt or ())
        shown_tier = request.mode if cost.unit == CREDITS else request.resolution or DASHSCOPE_DEFAULT_RESOLUTION
        duration = "as its source" if request.effective_task == "edit" else f"{request.duration:g} s"
        if cost.amount is None:
            amount = "unknown"
        else:
            amount = f"{cost.amount:g}" if header_unit else f"{cost.amount:g} {cost.unit}"
            totals.setdefault(cost.unit, []).append(cost.amount)
        if cost.note:
            notes.append(f"- render {index}: {'unknown, ' if cost.amount is None else ''}{cost.note}")
        lines.append(
            f"| {index} | {_cell(_short(prompt))} | {shown_tier} | {duration} | "
            f"{'yes' if request.sound else 'no'} | {_cell(amount)} |"
        )
    added = " + ".join(
        f"{math.fsum(amounts):g}" if header_unit else f"{math.fsum(amounts):g} {unit}"
        for unit, amounts in totals.items()
    )
    unknown = sum(1 for _, cost in priced if cost.amount is None)
    if not unknown:
        total = added or "0"
    elif added:
        total = f"unknown: {unknown} of {len(priced)} without an estimate, the others {added}"
    else:
        total = f"unknown: {unknown} of {len(priced)} without an estimate"
    lines.append(f"| | **total: {len(renders)} renders** | | | | **{_cell(total)}** |")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def clip_page_url(base_url: str, dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """The clip's page in the HappyHorse view (``/happyhorse/clip?...``), under Airflow's ``base_url``."""
    query = urlencode({"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index})
    return f"{base_url.rstrip('/')}{UI_URL_PREFIX}/clip?{query}"


def clip_review_body(
    result: Mapping[str, Any], *, base_url: str, dag_id: str, run_id: str, task_id: str, map_index: int
) -> str:
    """A clip's review text (markdown): its poster, prompt, facts and a link to its page in the view."""
    page = clip_page_url(base_url, dag_id, run_id, task_id, map_index)
    request = result.get("request") or {}
    lines = []
    if result.get("poster_path"):
        poster = page.replace(f"{UI_URL_PREFIX}/clip?", f"{UI_URL_PREFIX}/files/poster?", 1)
        lines.append(f"[![poster of job {result.get('job_id')}]({poster})]({page})")
    lines += [
        f"**Prompt:** {_cell(request.get('prompt') or '(multi-shot)')}",
        "",
        f"{request.get('mode', '?')} · {request.get('duration', '?')} s · "
        f"{_estimate(result)} (est.) · job `{result.get('job_id')}`",
        "",
        f"[Watch the clip in the HappyHorse view]({page})",
        "",
        f"*{REGENERATE}* renders it again with the prompt you enter below (a new request, paid once).",
    ]
    return "\n".join(lines)


@dataclass
class Reviewed:
    """What a round of answers decided: what to publish, what to render again, and one mark per clip."""

    approved: list[dict[str, Any]] = field(default_factory=list)  # the clips' results, with their keys
    regenerate: list[dict[str, Any]] = field(default_factory=list)  # operator kwargs for the new renders
    marks: list[dict[str, Any]] = field(default_factory=list)


def _answer(response: Mapping[str, Any] | None) -> tuple[str | None, str, str | None]:
    """The chosen option, the entered prompt (or ''), and who answered, from one HITL result."""
    if not response:
        return None, "", None
    chosen = list(response.get("chosen_options") or [])
    prompt = str((response.get("params_input") or {}).get(PROMPT_PARAM) or "").strip()
    user = response.get("responded_by_user") or {}
    return (chosen[0] if chosen else None), prompt, user.get("name") if isinstance(user, Mapping) else None


def sort_reviews(
    clips: Iterable[Mapping[str, Any]],
    responses: Iterable[Mapping[str, Any] | None],
    *,
    regenerate_path: str | None = None,
) -> Reviewed:
    """
    Pair each clip (its result, with ``dag_id``, ``run_id``, ``task_id`` and ``map_index`` added) with its
    answer. ``approve``: published. ``reject``: kept, not published. ``regenerate``: the same request
    with the entered prompt, stored beside the old clip (``regenerate_path``, formatted with the clip's
    ``map_index``) and reviewed again; without a new prompt it would be the same request (which the
    provider re-attaches to, not pays for), so it is kept unpublished and marked as such.
    """
    reviewed = Reviewed()
    for clip, response in zip(clips, responses, strict=True):
        option, prompt, user = _answer(response)
        key = {name: clip[name] for name in ("dag_id", "run_id", "task_id", "map_index")}
        mark: dict[str, Any] = {**key, "job_id": clip.get("job_id"), "outcome": option or "not answered", "by": user}
        request = dict(clip.get("request") or {})
        if option == APPROVE:
            reviewed.approved.append(dict(clip))
            mark["outcome"] = "approved"
        elif option == REJECT:
            mark["outcome"] = "rejected"
        elif option == REGENERATE and (not prompt or prompt == request.get("prompt")):
            mark["outcome"] = "kept: regenerate needs an edited prompt"
        elif option == REGENERATE:
            fields = {k: v for k, v in request.items() if k != "model"}
            if "happyhorse_elements" in fields:  # the body's name for the operator's ``elements``
                fields["elements"] = fields.pop("happyhorse_elements")
            fields["prompt"] = prompt
            if regenerate_path is not None:
                fields["output_path"] = regenerate_path.format(map_index=clip["map_index"])
            reviewed.regenerate.append(fields)
            mark.update(outcome="regenerated", new_prompt=prompt)
        reviewed.marks.append(mark)
    return reviewed


def _estimate(result: Mapping[str, Any]) -> str:
    """A result's estimate with its unit: money (``cost_unit``, DashScope) or credits (every earlier result)."""
    unit = result.get("cost_unit")
    if unit is not None:
        amount = result.get("cost_estimate")
        return f"{amount:g} {unit}" if isinstance(amount, (int, float)) else f"unknown {unit}"
    return f"{result.get('credits_estimate', '?')} credits"
