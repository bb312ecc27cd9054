"""
``@task.happyhorse``: a TaskFlow function returns the request; rendering it is ``GenerateVideoOperator``'s.

The function runs first on the worker and returns the request: a dict of the operator's request
arguments (``prompt``, ``mode``, ``duration``, ``aspect_ratio``, ``image_urls``, ``sound``,
``cfg_scale``, ``multi_shots``, ``multi_prompt``, ``elements``) or a ``VideoRequest``. Everything after
is the operator's, unchanged: validation and ``max_credits`` before paying, the re-attach to a job an
earlier try paid for (by the request's fingerprint), deferral, ``output_path`` with ``if_exists`` and
``verify_clip``. The operator's other arguments (``happyhorse_conn_id``, ``output_path``,
``max_credits``, ...) are the decorator's: ``@task.happyhorse(output_path=...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    DecoratedOperator,
    TaskDecorator,
    context_merge,
    determine_kwargs,
    task_decorator_factory,
)

from airflow_provider_happyhorse.constants import XCOM_JOB_ID_KEY, XCOM_REQUEST_KEY
from airflow_provider_happyhorse.exceptions import InvalidRequestError
from airflow_provider_happyhorse.models import VideoRequest
from airflow_provider_happyhorse.operators.fields import REQUEST_ARGUMENTS, request_from_arguments
from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

# The XCom that keeps the function's request for the worker that finishes the task after deferral
# (a new process: the function is not run again there).
REQUEST_XCOM_KEY = XCOM_REQUEST_KEY


class HappyHorseDecoratedOperator(DecoratedOperator, GenerateVideoOperator):
    """
    ``GenerateVideoOperator`` whose request is what its Python callable returns (see ``@task.happyhorse``).

    :param python_callable: returns the request: a dict of ``GenerateVideoOperator``'s request arguments
        or a ``VideoRequest``.
    :param op_args: positional arguments of the callable (templated).
    :param op_kwargs: keyword arguments of the callable (templated).

    Every other keyword argument is ``GenerateVideoOperator``'s, except its request arguments.
    """

    custom_operator_name = "@task.happyhorse"
    # The request comes from the callable, not from templates: only the operator's other fields are templated.
    template_fields: Sequence[str] = (
        *DecoratedOperator.template_fields,
        *(name for name in GenerateVideoOperator.template_fields if name not in REQUEST_ARGUMENTS),
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **DecoratedOperator.template_fields_renderers,
        **{k: v for k, v in GenerateVideoOperator.template_fields_renderers.items() if k not in REQUEST_ARGUMENTS},
    }

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        _refuse_request_arguments(kwargs, f"{python_callable.__name__}()")
        super().__init__(python_callable=python_callable, op_args=op_args, op_kwargs=op_kwargs, **kwargs)
        self._request: VideoRequest | None = None

    def execute(self, context: Context) -> Any:
        context_merge(context, self.op_kwargs)
        returned = self.python_callable(*self.op_args, **determine_kwargs(self.python_callable, self.op_args, context))
        try:
            self._request = self._as_request(returned)
        except InvalidRequestError as error:
            raise AirflowFailException(
                f"{error} (returned by {self.python_callable.__name__}()). Nothing was submitted."
            ) from None
        context["ti"].xcom_push(key=REQUEST_XCOM_KEY, value=self._request.to_body())
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any] | str) -> Any:
        if self._request is None:  # resumed after deferral: the request the callable returned before
            ti = context["ti"]
            body = ti.xcom_pull(task_ids=self.task_id, key=REQUEST_XCOM_KEY, map_indexes=ti.map_index)
            if not isinstance(body, dict):
                raise AirflowFailException(
                    f"The XCom {REQUEST_XCOM_KEY!r} of this task instance, the request its callable returned "
                    f"before deferring, is missing or not a request (got {type(body).__name__}). The job id is "
                    f"in the XCom {XCOM_JOB_ID_KEY!r}; clear the task to re-attach to the job."
                )
            self._request = VideoRequest.parse(body)
        return super().execute_complete(context, event)

    def video_request(self) -> VideoRequest:
        """The request the callable returned (known once :meth:`execute` ran it)."""
        if self._request is None:
            raise InvalidRequestError(
                f"Invalid HappyHorse request: not known before {self.python_callable.__name__}() runs in execute()"
            )
        return self._request

    @staticmethod
    def _as_request(returned: Any) -> VideoRequest:
        if isinstance(returned, VideoRequest):
            return returned
        if isinstance(returned, Mapping):
            return request_from_arguments(returned)
        raise InvalidRequestError(
            f"Invalid HappyHorse request: a @task.happyhorse function returns a dict of request arguments "
            f"or a VideoRequest, not {type(returned).__name__}"
        )


def happyhorse_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> TaskDecorator:
    """
    ``@task.happyhorse``: render the request the decorated function returns with ``GenerateVideoOperator``.

    The keyword arguments are the operator's (``output_path``, ``max_credits``, ``happyhorse_conn_id``, ...
    and BaseOperator's), not its request arguments; the task's XCom is the operator's result, as one
    value (``multiple_outputs`` is always off).
    """
    # Here too, not only in the operator: a mapped task's operator is built only when it runs.
    _refuse_request_arguments(kwargs, "the decorated function")
    if "multiple_outputs" in kwargs:
        raise TypeError("@task.happyhorse(multiple_outputs=...): its XCom is the video's result, one value")
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=False,
        decorated_operator_class=HappyHorseDecoratedOperator,
        **kwargs,
    )


def _refuse_request_arguments(kwargs: Mapping[str, Any], function: str) -> None:
    given = sorted(name for name in kwargs if name in REQUEST_ARGUMENTS)
    if given:
        raise TypeError(
            f"@task.happyhorse({', '.join(f'{name}=...' for name in given)}): the request is what {function} "
            f"returns; return {', '.join(map(repr, given))} from it instead"
        )
