"""
The HappyHorse view's FastAPI app, mounted in Airflow's api-server at ``/happyhorse``.

Every route needs an authenticated user (Airflow's own ``get_user`` dependency: the UI's session cookie
or a bearer token), and every row, poster and clip is served only to a user the auth manager lets read
its DAG and that DAG's XComs (a clip is a task's result XCom: Airflow's own XCom routes ask the same). A
file route serves only the path recorded in that task instance's own result, never one taken from the
request, and only a file the provider stored there (``ui.files``: its record beside it, the same size and
SHA-256, an MP4 or JPEG, inside ``[happyhorse] view_roots`` when set). Files stream in chunks with HTTP
Range support, so players can seek and memory stays constant.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from airflow_provider_happyhorse.constants import UI_PAGE_SIZE, UI_STREAM_CHUNK
from airflow_provider_happyhorse.core.record import RenderRecord
from airflow_provider_happyhorse.ui.clips import (
    AVAILABILITY,
    Clip,
    ClipKey,
    get_clip,
    in_flight,
    list_clips,
    review_marks,
    spend,
)
from airflow_provider_happyhorse.ui.files import POSTER, VIDEO, NotServed, open_stored_file
from airflow_provider_happyhorse.ui.ranges import UnsatisfiableRange, byte_range

User = GetUserDep
DBSession = SessionDep


def _team_names(dag_ids: Iterable[str]) -> dict[str, str | None]:
    """Each DAG's team, where Airflow runs in multi-team mode (its auth managers decide per team)."""
    from airflow.configuration import conf
    from airflow.models.dag import DagModel

    mapping = getattr(DagModel, "get_dag_id_to_team_name_mapping", None)
    if mapping is None or not conf.getboolean("core", "multi_team", fallback=False):
        return {}
    return dict(mapping(sorted(set(dag_ids))))


def may_read_xcoms(user: BaseUser, dag_ids: Iterable[str]) -> set[str]:
    """Those of ``dag_ids`` whose XComs the auth manager lets this user read (as Airflow's XCom routes ask)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    manager, wanted = get_auth_manager(), set(dag_ids)
    teams = _team_names(wanted)

    def details(dag_id: str) -> DagDetails:
        team = teams.get(dag_id)
        return DagDetails(id=dag_id) if team is None else DagDetails(id=dag_id, team_name=team)

    return {
        dag_id
        for dag_id in wanted
        if manager.is_authorized_dag(
            method="GET", access_entity=DagAccessEntity.XCOM, details=details(dag_id), user=user
        )
    }


def readable_dags(user: BaseUser) -> set[str]:
    """
    The DAGs whose clips this user may see: those the auth manager lets them read (Airflow's own lists ask
    the same question) and whose XComs they may read.
    """
    return may_read_xcoms(user, get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def _now() -> datetime:
    return datetime.now(UTC)


def _page() -> str:
    return resources.files("airflow_provider_happyhorse.ui").joinpath("index.html").read_text(encoding="utf-8")


def _clip_for(session: Session, user: BaseUser, key: ClipKey) -> Clip:
    if key.dag_id not in get_auth_manager().get_authorized_dag_ids(user=user, method="GET"):
        raise HTTPException(status_code=403, detail=f"You may not read DAG {key.dag_id!r}")
    if not may_read_xcoms(user, [key.dag_id]):
        raise HTTPException(status_code=403, detail=f"You may not read the XComs of DAG {key.dag_id!r}")
    clip = get_clip(session, key)
    if clip is None:
        raise HTTPException(status_code=404, detail="No HappyHorse clip for this task instance")
    return clip


def _key(dag_id: str, run_id: str, task_id: str, map_index: int) -> ClipKey:
    return ClipKey(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index)


Key = Annotated[ClipKey, Depends(_key)]


def _where(key: ClipKey) -> str:
    return f"dag_id={key.dag_id} run_id={key.run_id} task_id={key.task_id} map_index={key.map_index}"


def serve_stored(result: RenderRecord | dict[str, Any], kind: str, key: ClipKey, request: Request) -> Response:
    """
    The clip or poster the provider stored for this result (``ui.files``: else 404 naming the rule), whole
    or one byte range, streamed in chunks from the one descriptor the rule checked.
    """
    try:
        stored = open_stored_file(result, kind, _where(key))
    except NotServed as refusal:
        raise HTTPException(status_code=404, detail=refusal.detail) from None
    size = stored.size
    try:
        wanted = byte_range(request.headers.get("range"), size)
    except UnsatisfiableRange:
        stored.close()
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}", **stored.headers})
    first, last = wanted if wanted is not None else (0, size - 1)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(last - first + 1),
        "Cache-Control": "private",
        **stored.headers,
    }
    if wanted is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    # A sync iterator: Starlette runs it in a thread, off the event loop; it closes the file when done.
    chunks = stored.chunks(first, last, UI_STREAM_CHUNK)
    return StreamingResponse(chunks, status_code=206 if wanted else 200, headers=headers, media_type=stored.media_type)


def create_app() -> FastAPI:
    app = FastAPI(title="HappyHorse", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def gallery_page(user: User) -> str:
        return _page()

    @app.get("/clip", response_class=HTMLResponse)
    def clip_page(user: User, session: DBSession, key: Key) -> str:
        _clip_for(session, user, key)  # 403/404 before the page
        return _page()

    @app.get("/api/clips")
    def clips(
        user: User,
        session: DBSession,
        dag_id: Annotated[list[str] | None, Query()] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        availability: Annotated[str | None, Query(pattern="^(" + "|".join(AVAILABILITY) + ")$")] = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=200)] = UI_PAGE_SIZE,
    ) -> dict[str, Any]:
        now = _now()
        page, total = list_clips(
            session,
            readable_dags(user),
            dag_ids=dag_id,
            since=since,
            until=until,
            availability=availability,
            offset=offset,
            limit=limit,
            now=now,
        )
        marks = review_marks(session, page)
        rows = [{**clip.as_row(now), "review": marks.get(clip.key)} for clip in page]
        return {"clips": rows, "total": total, "offset": offset, "limit": limit}

    @app.get("/api/clip")
    def clip(user: User, session: DBSession, key: Key) -> dict[str, Any]:
        found = _clip_for(session, user, key)
        return {**found.as_row(_now()), "review": review_marks(session, [found]).get(found.key)}

    @app.get("/api/spend")
    def spending(
        user: User,
        session: DBSession,
        dag_id: Annotated[list[str] | None, Query()] = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[str, Any]:
        return spend(session, readable_dags(user), dag_ids=dag_id, since=since, until=until)

    @app.get("/api/in-flight")
    def renders(user: User, session: DBSession) -> dict[str, Any]:
        return {"renders": in_flight(session, readable_dags(user))}

    @app.get("/files/video")
    def video(user: User, session: DBSession, key: Key, request: Request) -> Response:
        clip = _clip_for(session, user, key)
        if clip.record.stored is None:
            raise HTTPException(status_code=404, detail="This clip was not stored: it plays from its temporary URL")
        return serve_stored(clip.record, VIDEO, key, request)

    @app.get("/files/poster")
    def poster(user: User, session: DBSession, key: Key, request: Request) -> Response:
        clip = _clip_for(session, user, key)
        if clip.record.stored is None or clip.record.stored.poster_path is None:
            raise HTTPException(status_code=404, detail="This clip has no poster")
        return serve_stored(clip.record, POSTER, key, request)

    return app
