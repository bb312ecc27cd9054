"""
Budgets: plan a run's renders before any of them is paid for, under a limit a trigger cannot raise.

- :func:`plan_renders` validates every row (``GenerateVideoOperator``'s keyword arguments) into a
  ``VideoRequest`` held to its connection's dialect's rules (:func:`priced_request`), estimates each, and
  refuses the whole run, before anything is submitted, when a row is invalid or the total is above the limit.
- :class:`RunBudget` is the DAG author's ceiling for a run: :meth:`RunBudget.param` makes the limit a DAG
  param whose JSON-schema ``maximum`` is the ceiling (a trigger's conf may lower it; Airflow refuses to
  create a run whose conf asks for more), and :meth:`RunBudget.plan_renders` reads the run's value, checks
  it once more and plans under it.

Errors fail the task without retries (a retry would not change the rows or the limit). Estimates are in the
dialect's unit (``core.cost``): credits, :data:`COST_UNIT`, unless a row's connection (its
``happyhorse_conn_id``, or the ``happyhorse_conn_id`` the plan is given) speaks DashScope, which bills money
from the connection's price table. Every message takes the unit from the plan's or budget's ``unit``; a plan
whose rows bill in another unit than its limit, or whose estimate is unknown (no price table), is refused.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_happyhorse.core.cost import CREDITS, CostEstimate, estimate_cost
from airflow_provider_happyhorse.exceptions import ConfigurationError, HappyHorseError, InvalidRequestError
from airflow_provider_happyhorse.models import VideoRequest
from airflow_provider_happyhorse.operators.fields import REQUEST_ARGUMENTS, request_from_arguments

if TYPE_CHECKING:
    from airflow.sdk import Param

# What estimates and limits are counted in (the service's price list is in credits).
COST_UNIT = CREDITS


def priced_request(
    arguments: Mapping[str, Any], conn_id: str | None, settings: dict[str, Any]
) -> tuple[VideoRequest, CostEstimate]:
    """
    A row's request, validated as the operator validates it before paying (the request model, then the rules of
    the connection's dialect: prompt length, ratios, what the service lacks), and its estimate in that
    connection's unit. No connection named (``conn_id`` None): happyhorse.app's rules and credits.
    ``InvalidRequestError`` naming the field, rule and value; ``ConfigurationError`` for an unusable connection.
    ``settings`` caches each connection's settings across rows.
    """
    from airflow_provider_happyhorse.core.dialects import HAPPYHORSE

    request = request_from_arguments(arguments)
    if conn_id is None:
        if (refused := HAPPYHORSE.refusal(request)) is not None:
            raise refused
        return request, estimate_cost(request, HAPPYHORSE.name)
    if conn_id not in settings:
        from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook

        settings[conn_id] = HappyHorseHook(conn_id).settings
    resolved = settings[conn_id]
    if (refused := resolved.dialect.refusal(request)) is not None:
        raise refused
    return request, estimate_cost(request, resolved.dialect_name, resolved.prices)


def priced_row(
    row: Mapping[str, Any], conn_id: str | None, settings: dict[str, Any]
) -> tuple[VideoRequest, CostEstimate]:
    """
    :func:`priced_request` of one row (``GenerateVideoOperator``'s keyword arguments) on its connection: the row's
    own ``happyhorse_conn_id``, else ``conn_id``. A key that is no argument of the operator is an
    ``InvalidRequestError`` too; the row's other arguments (``output_path``, ``max_credits``...) are not the
    request's and are left out of it.
    """
    unknown = sorted(key for key in row if key not in REQUEST_ARGUMENTS and key not in _other_arguments())
    if unknown:
        raise InvalidRequestError(f"{', '.join(map(repr, unknown))}: not an argument of GenerateVideoOperator")
    arguments = {key: row[key] for key in row if key in REQUEST_ARGUMENTS}
    return priced_request(arguments, row.get("happyhorse_conn_id", conn_id), settings)


class RunPlanError(AirflowFailException, HappyHorseError):
    """A run refused by its plan, before any render; fails the task without retries."""


class InvalidRowError(RunPlanError):
    """One or more rows are not a valid render; ``problems`` maps each bad row's index to what is wrong."""

    def __init__(self, problems: dict[int, str]) -> None:
        self.problems = problems
        described = "; ".join(f"rows[{index}]: {problem}" for index, problem in problems.items())
        super().__init__(f"{described}. Nothing was submitted: fix the rows named, then clear the task.")


class BudgetExceededError(RunPlanError):
    """The run's estimated total is above its limit."""

    def __init__(self, *, limit_name: str, renders: int, total: float, limit: float, unit: str, way_out: str) -> None:
        self.total = total
        self.limit = limit
        self.unit = unit
        super().__init__(
            f"{limit_name}: the run's {renders} renders are estimated at {total:g} {unit}, above the limit of "
            f"{limit:g} {unit}. Nothing was submitted. {way_out}"
        )


@dataclass(frozen=True)
class PlannedRender:
    """One row of a plan: its validated request and estimate, and the row as given."""

    index: int
    request: VideoRequest
    estimate: float
    arguments: Mapping[str, Any]


@dataclass(frozen=True)
class RenderPlan:
    """Every render of a run, validated and estimated, whose total is within ``limit``."""

    renders: tuple[PlannedRender, ...]
    limit: float
    unit: str = COST_UNIT

    @property
    def total(self) -> float:
        return math.fsum(render.estimate for render in self.renders)

    def operator_arguments(self) -> list[dict[str, Any]]:
        """The rows as given: for ``GenerateVideoOperator.partial(...).expand_kwargs(...)``."""
        return [dict(render.arguments) for render in self.renders]

    def summary(self) -> str:
        return (
            f"{len(self.renders)} renders, estimated at {self.total:g} {self.unit} (limit {self.limit:g} {self.unit})"
        )


def plan_renders(
    rows: Iterable[Mapping[str, Any]],
    *,
    limit: float,
    limit_name: str = "limit",
    unit: str = COST_UNIT,
    happyhorse_conn_id: str | None = None,
) -> RenderPlan:
    """
    The run's plan: every row validated and estimated, the total within ``limit``; otherwise
    ``InvalidRowError`` naming each bad row, field, rule and value, or ``BudgetExceededError`` naming the
    total and the limit. Nothing is sent anywhere.

    :param rows: each row ``GenerateVideoOperator``'s keyword arguments (the request's and any other,
        such as ``output_path``), as ``expand_kwargs`` takes them.
    :param limit: the most the run may cost, in ``unit``.
    :param limit_name: what the limit is called where it is set (a param's name), for messages.
    :param unit: the limit's unit: credits (happyhorse.app) or the currency of a DashScope connection's
        price table.
    :param happyhorse_conn_id: the connection the rows render on, when they do not name their own
        (``happyhorse_conn_id`` in a row): its dialect and price table give the estimates. None: credits.
    """
    checked = _checked_limit(limit, limit_name, ceiling=None, unit=unit)
    way_out = f"Remove rows or make them cheaper, or raise {limit_name}."
    return _plan(rows, checked, limit_name, way_out, unit=unit, conn_id=happyhorse_conn_id)


@dataclass(frozen=True)
class RunBudget:
    """
    The most a run of a DAG may cost, ``ceiling`` (in ``unit``), set by the DAG's author. Each run's limit
    is the param ``name``: a trigger's conf may lower it, never raise it past the ceiling.
    """

    name: str
    ceiling: float
    unit: str = COST_UNIT

    def __post_init__(self) -> None:
        _checked_limit(self.ceiling, f"RunBudget({self.name!r}).ceiling", ceiling=None, unit=self.unit)

    def param(self) -> Param:
        """The run's limit as a DAG param: default the ceiling, schema ``minimum`` 0 and ``maximum`` the ceiling."""
        from airflow.sdk import Param

        return Param(
            self.ceiling,
            type="number",
            minimum=0,
            maximum=self.ceiling,
            description=f"Most {self.unit} this run may spend (estimated before any render): at most "
            f"{self.ceiling:g}. A trigger may lower it; raising the ceiling is a change to the DAG file.",
        )

    def limit(self, params: Mapping[str, Any] | None) -> float:
        """
        The run's limit from its params, checked again: Airflow validates the param when it creates the
        run and when a task starts; this is for whatever bypasses both (a task function called directly).
        """
        value = self.ceiling if params is None else params.get(self.name, self.ceiling)
        return _checked_limit(value, self.name, ceiling=self.ceiling, unit=self.unit)

    def plan_renders(
        self,
        rows: Iterable[Mapping[str, Any]],
        params: Mapping[str, Any] | None,
        *,
        happyhorse_conn_id: str | None = None,
    ) -> RenderPlan:
        """
        :func:`plan_renders` under this run's limit (its ``params``, e.g. the task's ``params``), in this
        budget's ``unit``, on ``happyhorse_conn_id`` for rows that name no connection.
        """
        limit = self.limit(params)
        way_out = (
            f"Remove rows or make them cheaper, or trigger with a higher {self.name} (at most {self.ceiling:g}; "
            "more is a change to the DAG file)."
        )
        return _plan(rows, limit, self.name, way_out, unit=self.unit, conn_id=happyhorse_conn_id)


def _checked_limit(value: Any, name: str, *, ceiling: float | None, unit: str) -> float:
    allowed = f"a number of {unit} from 0" + ("" if ceiling is None else f" to {ceiling:g}")
    # As the param's schema (type number): a JSON true or "500" is not a limit, though float() reads them.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RunPlanError(f"{name}: must be {allowed} (got {value!r}). Nothing was submitted.")
    limit = float(value)
    if math.isfinite(limit) and 0 <= limit <= (math.inf if ceiling is None else ceiling):
        return limit
    if ceiling is None:
        raise RunPlanError(f"{name}: must be {allowed} (got {value!r}). Nothing was submitted.")
    raise RunPlanError(
        f"{name}: must be {allowed}, the most this DAG allows a run to spend (got {value!r}). Nothing was "
        "submitted. Raising the most is a change to the DAG file, not to a trigger's conf."
    )


def _plan(
    rows: Iterable[Mapping[str, Any]], limit: float, limit_name: str, way_out: str, *, unit: str, conn_id: str | None
) -> RenderPlan:
    renders: list[PlannedRender] = []
    problems: dict[int, str] = {}
    settings: dict[str, Any] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            problems[index] = f"must be a dict of GenerateVideoOperator's keyword arguments, got {type(row).__name__}"
            continue
        row_conn = row.get("happyhorse_conn_id", conn_id)
        try:
            request, cost = priced_row(row, conn_id, settings)
        except InvalidRequestError as error:
            problems[index] = str(error)
            continue
        except ConfigurationError as error:
            raise RunPlanError(f"{error} Nothing was submitted.") from None
        if cost.amount is None:
            problems[index] = f"the estimate is {cost}, so the run's {limit_name} cannot be held to it"
            continue
        if cost.unit != unit:
            problems[index] = (
                f"the connection {row_conn!r} bills in {cost.unit}, but {limit_name} counts {unit}: "
                f"give the budget unit={cost.unit!r} (RunBudget(..., unit=...) or plan_renders(..., unit=...))"
            )
            continue
        renders.append(PlannedRender(index=index, request=request, estimate=cost.amount, arguments=row))
    if problems:
        raise InvalidRowError(problems)
    plan = RenderPlan(renders=tuple(renders), limit=limit, unit=unit)
    if plan.total > limit:
        raise BudgetExceededError(
            limit_name=limit_name, renders=len(renders), total=plan.total, limit=limit, unit=plan.unit, way_out=way_out
        )
    return plan


@cache
def _other_arguments() -> frozenset[str]:
    """The keyword arguments of GenerateVideoOperator (and BaseOperator) that are not the request's."""
    from airflow.providers.common.compat.sdk import BaseOperator

    from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

    names = set(inspect.signature(GenerateVideoOperator.__init__).parameters)
    names |= set(inspect.signature(BaseOperator.__init__).parameters)
    return frozenset(names - set(REQUEST_ARGUMENTS) - {"self", "kwargs", "args"})
