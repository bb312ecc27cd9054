"""The "HappyHorse video" extra link: the finished job's result URL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey


class HappyHorseVideoLink(BaseOperatorLink):
    """
    Airflow stores a link's URL as an XCom when a task ends on a worker, by calling ``get_link`` there;
    the operator's result is in memory at that moment (empty while it defers). When the triggerer ends
    the task instead, the trigger stores the same XCom itself.
    """

    name = "HappyHorse video"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        result = getattr(operator, "_result", None)
        if isinstance(result, dict) and isinstance(result.get("video_url"), str):
            return str(result["video_url"])
        return ""
