"""The "HappyHorse video" extra link: the stored clip's page in the HappyHorse view, else the result URL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from airflow.providers.common.compat.sdk import BaseOperatorLink

from airflow_provider_happyhorse.constants import UI_URL_PREFIX, XCOM_RESULT_KEY
from airflow_provider_happyhorse.core.egress import EgressRule, link_refusal

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey


def clip_page(ti_key: TaskInstanceKey) -> str:
    """The HappyHorse view's page of this task instance's clip (under the api-server's base path)."""
    from airflow.providers.common.compat.sdk import conf

    base = urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    query = urlencode(
        {"dag_id": ti_key.dag_id, "run_id": ti_key.run_id, "task_id": ti_key.task_id, "map_index": ti_key.map_index}
    )
    return f"{base}{UI_URL_PREFIX}/clip?{query}"


def shown_url(url: object, rule: EgressRule) -> str:
    """A result URL as a link, only when it passes the download rule's checks (``core.egress.link_refusal``)."""
    return url if isinstance(url, str) and link_refusal(url, rule) is None else ""


class HappyHorseVideoLink(BaseOperatorLink):
    """
    Airflow stores a link's URL as an XCom when a task ends on a worker, by calling ``get_link`` there,
    after the task's result XCom. A stored clip's link opens its page in the HappyHorse view (Airflow 3.1+),
    which never expires; a clip that was not stored links to the job's temporary result URL, when that URL
    passes the connection's download rule (``shown_url``). When the triggerer ends the task (nothing stored),
    the trigger stores that URL as the link itself.
    """

    name = "HappyHorse video"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        from airflow.providers.common.compat.sdk import XCom
        from pydantic import ValidationError

        from airflow_provider_happyhorse.core.record import RenderRecord
        from airflow_provider_happyhorse.ui.plugin import view_available

        result = XCom.get_value(ti_key=ti_key, key=XCOM_RESULT_KEY)
        if not isinstance(result, dict):
            return ""
        try:
            record = RenderRecord.from_result(result)
        except ValidationError:
            return ""
        if record.stored is not None and view_available():
            return clip_page(ti_key)
        from airflow_provider_happyhorse.exceptions import ConfigurationError
        from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook

        conn_id = getattr(operator, "happyhorse_conn_id", HappyHorseHook.default_conn_name)
        try:
            rule = HappyHorseHook(conn_id).settings.egress
        except ConfigurationError:
            return ""
        return shown_url(record.video_url, rule)
