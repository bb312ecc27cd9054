"""
The HappyHorse view's FastAPI app, mounted in Airflow's api-server at ``/happyhorse``.

Every route needs an authenticated user (Airflow's own ``get_user`` dependency: the UI's session cookie
or a bearer token), and every row, poster and clip is served only to a user the auth manager lets read
its DAG. A file route serves only the path recorded in that task instance's own result, never one taken
from the request. Files stream in chunks with HTTP Range support, so players can seek and memory stays
constant.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
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
from airflow_provider_happyhorse.ui.clips import AVAILABILITY, Clip, ClipKey, get_clip, in_flight, list_clips, spend
from airflow_provider_happyhorse.ui.ranges import UnsatisfiableRange, byte_range

User = GetUserDep
DBSession = SessionDep


def readable_dags(user: BaseUser) -> set[str]:
    """The DAGs the auth manager lets this user read (Airflow's own routes ask the same question)."""
    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _page() -> str:
    return resources.files("airflow_provider_happyhorse.ui").joinpath("index.html").read_text(encoding="utf-8")


def _clip_for(session: Session, user: BaseUser, key: ClipKey) -> Clip:
    if key.dag_id not in readable_dags(user):
        raise HTTPException(status_code=403, detail=f"You may not read DAG {key.dag_id!r}")
    clip = get_clip(session, key)
    if clip is None:
        raise HTTPException(status_code=404, detail="No HappyHorse clip for this task instance")
    return clip


def _key(dag_id: str, run_id: str, task_id: str, map_index: int) -> ClipKey:
    return ClipKey(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index)


Key = Annotated[ClipKey, Depends(_key)]


def _serve(path_text: str, request: Request, media_type: str) -> Response:
    """A stored file (recorded in the result), whole or one byte range, streamed in chunks."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    path = ObjectStoragePath(path_text)
    try:
        size = path.stat().st_size
    except (FileNotFoundError, OSError):
        raise HTTPException(status_code=404, detail="The stored file is gone from its storage") from None
    try:
        wanted = byte_range(request.headers.get("range"), size)
    except UnsatisfiableRange:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    first, last = wanted if wanted is not None else (0, size - 1)
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(last - first + 1), "Cache-Control": "private"}
    if wanted is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"

    def chunks() -> Iterator[bytes]:  # a sync iterator: Starlette runs it in a thread, off the event loop
        remaining = last - first + 1
        with path.open("rb") as handle:
            handle.seek(first)
            while remaining > 0 and (chunk := handle.read(min(UI_STREAM_CHUNK, remaining))):
                remaining -= len(chunk)
                yield chunk

    return StreamingResponse(chunks(), status_code=206 if wanted else 200, headers=headers, media_type=media_type)


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
        return {"clips": [clip.as_row(now) for clip in page], "total": total, "offset": offset, "limit": limit}

    @app.get("/api/clip")
    def clip(user: User, session: DBSession, key: Key) -> dict[str, Any]:
        return _clip_for(session, user, key).as_row(_now())

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
        stored = _clip_for(session, user, key).result.get("stored_path")
        if not stored:
            raise HTTPException(status_code=404, detail="This clip was not stored: it plays from its temporary URL")
        return _serve(str(stored), request, "video/mp4")

    @app.get("/files/poster")
    def poster(user: User, session: DBSession, key: Key, request: Request) -> Response:
        stored = _clip_for(session, user, key).result.get("poster_path")
        if not stored:
            raise HTTPException(status_code=404, detail="This clip has no poster")
        return _serve(str(stored), request, "image/jpeg")

    return app
