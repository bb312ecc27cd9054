"""The "HappyHorse video" extra link: the finished job's result URL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey


class HappyHorseVideoLink(BaseOperatorLink):
    """
    Airflow stores a link's URL as an XCom when a task ends on a worker, by calling ``get_link`` there,
    after the task's result XCom: the link reads the result's ``video_url`` from it. When the triggerer
    ends the task instead, the trigger stores the same link XCom itself.
    """

    name = "HappyHorse video"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        from airflow.providers.common.compat.sdk import XCom

        result = XCom.get_value(ti_key=ti_key, key="return_value")
        if isinstance(result, dict) and isinstance(result.get("video_url"), str):
            return str(result["video_url"])
        return ""
