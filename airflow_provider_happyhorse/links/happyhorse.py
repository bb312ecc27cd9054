"""The "HappyHorse video" extra link: the finished job's result URL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey


class HappyHorseVideoLink(BaseOperatorLink):
    name = "HappyHorse video"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        result = XCom.get_value(ti_key=ti_key, key="return_value")
        if isinstance(result, dict) and isinstance(result.get("video_url"), str):
            return str(result["video_url"])
        return ""
