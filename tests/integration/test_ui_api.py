"""
The HappyHorse view's endpoints on Airflow's real api-server application (``create_app``, in process)
and a real metadata DB (SQLite), filled by real `airflow dags test` runs against the emulator: the
gallery, its filters and pages, the spend, the renders in flight, files with HTTP ranges, the extra
link, and access control through the auth manager (anonymous: 401; a user who may not read a DAG, or its
XComs: 403 and no row of it). The file routes serve only files the provider stored: a result edited to name
/etc/passwd, a DAG whose plain task returns a secret's path, and symlinks to a secret all get 404 and none
of the secret.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from happyhorse_emulator import EmulatorServer
from happyhorse_emulator.config import DEFAULT_API_KEY
from support.gallery import DAY, Gallery, airflow, airflow_env, render_in_flight, run_dags, run_ids

DAGS = Path(__file__).parent / "dags"
DAG_IDS = ("happyhorse_it_videos", "happyhorse_it_private")
ROGUE = "happyhorse_it_rogue"  # not run with the others: tests make and remove its run (see `rogue_run`)
NOT_SERVED = "(the HappyHorse view serves only files the provider stored)"
SERVED_HEADERS = {"x-content-type-options": "nosniff", "content-security-policy": "sandbox"}


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="module")
def env(output: Path, emulator_server: EmulatorServer) -> dict[str, str]:
    return airflow_env(DAGS, emulator_server, output)


@pytest.fixture(scope="module")
def gallery(output: Path, env: dict[str, str]) -> Iterator[Gallery]:
    # This process's Airflow uses the session's AIRFLOW_HOME (tests/conftest.py): fill its DB with real runs.
    airflow(env, "db", "migrate")
    run_dags(env, DAG_IDS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__AUTH_MANAGER", "support.auth.DagScopedAuthManager")
        # This process read its Airflow config before the first `airflow` command wrote one with a secret.
        patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(32))
        patch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS))
        from airflow.api_fastapi.app import create_app, get_auth_manager
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from fastapi.testclient import TestClient

        with TestClient(create_app()) as client:
            manager = get_auth_manager()
            # dag_reader may read every DAG but no XCom (support.auth); editor may edit XComs (an admin).
            roles = {"viewer": "viewer", "outsider": "viewer", "dag_reader": "viewer", "editor": "admin"}
            tokens = {
                name: manager.generate_jwt(SimpleAuthManagerUser(username=name, role=role))
                for name, role in roles.items()
            }
            yield Gallery(client, output, tokens, run_ids(DAG_IDS), default_user="viewer")


# -- access -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/", "/api/clips", "/api/spend", "/api/in-flight", "/api/clip", "/files/video", "/files/poster", "/clip"],
)
def test_anonymous_requests_get_401_and_never_a_file(gallery: Gallery, path: str) -> None:
    response = gallery.get(path, user=None, params=gallery.key("happyhorse_it_videos", "stored"))
    assert response.status_code == 401
    assert not response.content.startswith(b"\x00\x00\x00")  # no MP4 bytes


def test_the_session_cookie_of_the_ui_is_enough(gallery: Gallery) -> None:
    response = gallery.client.get("/happyhorse/", cookies={"_token": gallery.tokens["viewer"]})
    assert response.status_code == 200
    assert "<title>HappyHorse</title>" in response.text


def test_a_user_who_may_not_read_a_dag_sees_no_row_of_it_and_gets_403(gallery: Gallery) -> None:
    rows = gallery.get("/api/clips", user="outsider").json()["clips"]
    assert rows
    assert {row["dag_id"] for row in rows} == {"happyhorse_it_videos"}
    private = gallery.key("happyhorse_it_private", "private_clip")
    for path in ("/api/clip", "/files/video", "/files/poster", "/clip"):
        response = gallery.get(path, user="outsider", params=private)
        assert response.status_code == 403, path
        assert b"ftyp" not in response.content
    spend = gallery.get("/api/spend", user="outsider").json()
    assert set(spend["per_day"]) == {"happyhorse_it_videos"}
    # The one who may read it gets it.
    got = gallery.get("/api/clip", params=private)
    assert got.status_code == 200, (got.text, gallery.get("/api/clips").json())
    assert got.json()["dag_id"] == "happyhorse_it_private"


def test_a_user_who_may_read_a_dag_but_not_its_xcoms_sees_no_row_and_gets_403(gallery: Gallery) -> None:
    page = gallery.get("/api/clips", user="dag_reader").json()
    assert (page["clips"], page["total"]) == ([], 0)
    spend = gallery.get("/api/spend", user="dag_reader").json()
    assert (spend["total_credits"], spend["clips"], spend["per_day"]) == (0, 0, {})
    stored = gallery.key("happyhorse_it_videos", "stored")
    for path in ("/api/clip", "/files/video", "/files/poster", "/clip"):
        response = gallery.get(path, user="dag_reader", params=stored)
        assert response.status_code == 403, path
        assert "XComs" in response.json()["detail"]
        assert b"ftyp" not in response.content
    # Airflow's own XCom route refuses them too; the DAG itself they may read.
    headers = {"Authorization": f"Bearer {gallery.tokens['dag_reader']}"}
    run = f"/api/v2/dags/happyhorse_it_videos/dagRuns/{gallery.run_ids['happyhorse_it_videos']}"
    assert gallery.client.get(f"{run}/taskInstances/stored/xcomEntries", headers=headers).status_code == 403
    assert gallery.client.get(run, headers=headers).status_code == 200


# -- the gallery --------------------------------------------------------------------------------------------


def test_the_gallery_lists_every_clip_newest_first(gallery: Gallery) -> None:
    page = gallery.get("/api/clips").json()
    rows = page["clips"]
    assert page["total"] == 5 == len(rows)  # three mapped and one stored video, one private
    assert [row["made_at"] for row in rows] == sorted((row["made_at"] for row in rows), reverse=True)
    stored = next(row for row in rows if row["task_id"] == "stored")
    assert stored["availability"] == "stored"
    assert stored["verified"] is True
    assert stored["has_poster"] is True
    assert stored["prompt"] == f"a horse at night, {DAY}"
    assert (stored["mode"], stored["duration"], stored["sound"]) == ("std", 3.0, True)
    assert stored["credits_estimate"] == 180
    mapped = [row for row in rows if row["task_id"] == "mapped"]
    assert sorted(row["map_index"] for row in mapped) == [0, 1, 2]
    assert {row["availability"] for row in mapped} == {"temporary"}  # not stored: their URLs are still valid
    assert all(row["video_url"].startswith("http://127.0.0.1:") for row in mapped)
    assert all(row["expires_at"] for row in mapped)


@pytest.mark.parametrize(
    ("params", "task_ids"),
    [
        ({"dag_id": "happyhorse_it_private"}, ["private_clip"]),
        ({"availability": "stored"}, ["private_clip", "stored"]),
        ({"availability": "expired"}, []),
        ({"since": "2099-01-01T00:00:00Z"}, []),
        ({"until": "2000-01-01T00:00:00Z"}, []),
    ],
    ids=["one DAG", "stored only", "expired only", "from a future date", "until a past date"],
)
def test_the_gallery_filters(gallery: Gallery, params: dict[str, str], task_ids: list[str]) -> None:
    rows = gallery.get("/api/clips", params=params).json()["clips"]
    assert sorted(row["task_id"] for row in rows) == task_ids


def test_the_gallery_pages(gallery: Gallery) -> None:
    everything = [row["job_id"] for row in gallery.get("/api/clips").json()["clips"]]
    pages = [gallery.get("/api/clips", params={"offset": offset, "limit": 2}).json() for offset in (0, 2, 4)]
    assert [len(page["clips"]) for page in pages] == [2, 2, 1]
    assert [row["job_id"] for page in pages for row in page["clips"]] == everything
    assert gallery.get("/api/clips", params={"limit": 0}).status_code == 422


def test_spend_per_dag_per_day_and_month(gallery: Gallery) -> None:
    spend = gallery.get("/api/spend").json()
    rows = gallery.get("/api/clips").json()["clips"]
    assert spend["total_credits"] == sum(row["credits_estimate"] for row in rows)
    assert spend["clips"] == 5
    assert set(spend["per_day"]) == {"happyhorse_it_videos", "happyhorse_it_private"}
    for dag_id, days in spend["per_day"].items():
        assert sum(days.values()) == sum(spend["per_month"][dag_id].values())
    assert gallery.get("/api/spend", params={"dag_id": "happyhorse_it_private"}).json()["total_credits"] == 120


# -- files ----------------------------------------------------------------------------------------------------


def test_a_stored_clip_streams_whole_and_by_ranges(gallery: Gallery) -> None:
    clip = (gallery.output / f"{DAY}.mp4").read_bytes()
    whole = gallery.get("/files/video", params=gallery.key("happyhorse_it_videos", "stored"))
    assert whole.status_code == 200
    assert whole.content == clip
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "video/mp4"
    assert SERVED_HEADERS.items() <= whole.headers.items()
    assert whole.headers["content-disposition"] == f'inline; filename="{DAY}.mp4"'
    part = gallery.get(
        "/files/video", params=gallery.key("happyhorse_it_videos", "stored"), headers={"Range": "bytes=100-199"}
    )
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-199/{len(clip)}"
    assert part.content == clip[100:200]
    assert SERVED_HEADERS.items() <= part.headers.items()
    tail = gallery.get(
        "/files/video", params=gallery.key("happyhorse_it_videos", "stored"), headers={"Range": "bytes=-16"}
    )
    assert tail.content == clip[-16:]
    beyond = gallery.get(
        "/files/video", params=gallery.key("happyhorse_it_videos", "stored"), headers={"Range": f"bytes={len(clip)}-"}
    )
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(clip)}"


def test_the_poster_is_a_jpeg(gallery: Gallery) -> None:
    poster = gallery.get("/files/poster", params=gallery.key("happyhorse_it_videos", "stored"))
    assert poster.status_code == 200
    assert poster.headers["content-type"] == "image/jpeg"
    assert poster.content == (gallery.output / f"{DAY}.poster.jpg").read_bytes()
    assert SERVED_HEADERS.items() <= poster.headers.items()
    assert poster.headers["content-disposition"] == f'inline; filename="{DAY}.poster.jpg"'


def test_the_file_route_serves_only_the_recorded_path(gallery: Gallery) -> None:
    # A clip that was not stored has no file here, whatever the request adds.
    not_stored = {**gallery.key("happyhorse_it_videos", "mapped", 0), "path": str(gallery.output / f"{DAY}.mp4")}
    response = gallery.get("/files/video", params=not_stored)
    assert response.status_code == 404
    assert "plays from its temporary URL" in response.json()["detail"]
    unknown = gallery.get("/files/video", params=gallery.key("happyhorse_it_videos", "no_such_task"))
    assert unknown.status_code == 404


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_not_served(response: Any, rule: str, secret: bytes) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["detail"] == f"not served: {rule} {NOT_SERVED}"
    assert secret not in response.content
    for line in [line for line in secret.splitlines() if line.strip()][:5]:
        assert line not in response.content


@contextmanager
def patched_result(gallery: Gallery, key: dict[str, Any], value: dict[str, Any]) -> Iterator[None]:
    """A task's result XCom edited through Airflow's own PATCH route (as a user who may edit XComs), then restored."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airflow_provider_happyhorse.ui.clips import _value

    with create_session() as session:
        original = _value(
            session.scalar(
                select(XComModel.value).where(
                    XComModel.dag_id == key["dag_id"],
                    XComModel.run_id == key["run_id"],
                    XComModel.task_id == key["task_id"],
                    XComModel.map_index == key["map_index"],
                    XComModel.key == "return_value",
                )
            )
        )
    assert isinstance(original, dict)
    url = (
        f"/api/v2/dags/{key['dag_id']}/dagRuns/{key['run_id']}/taskInstances/{key['task_id']}/xcomEntries/return_value"
    )
    headers = {"Authorization": f"Bearer {gallery.tokens['editor']}"}

    def patch(new: dict[str, Any]) -> None:
        response = gallery.client.patch(url, json={"value": new, "map_index": key["map_index"]}, headers=headers)
        assert response.status_code == 200, response.text

    patch(value)
    try:
        yield
    finally:
        patch(original)


def test_a_result_edited_to_name_etc_passwd_serves_nothing_of_it(gallery: Gallery) -> None:
    passwd = Path("/etc/passwd").read_bytes()
    key = gallery.key("happyhorse_it_videos", "mapped", 1)
    forged = {
        "job_id": "x",
        "status": "SUCCESS",
        "stored_path": "/etc/passwd",
        "stored_size": len(passwd),
        "stored_sha256": sha256(passwd),
        "poster_path": "/etc/passwd",
    }
    with patched_result(gallery, key, forged):
        assert gallery.get("/api/clip", params=key).json()["availability"] == "stored"  # the edit took
        video = gallery.get("/files/video", params=key)
        assert_not_served(video, "the clip's record beside it is missing", passwd)
        poster = gallery.get("/files/poster", params=key)
        assert_not_served(poster, "the poster path is not the poster beside the stored clip", passwd)
        # The api-server's own config (its JWT secret, its Fernet key): nothing of it either.
        cfg = Path(os.environ["AIRFLOW_HOME"]) / "airflow.cfg"
        assert cfg.is_file()
        with patched_result(gallery, key, {**forged, "stored_path": f"file://{cfg}"}):
            assert_not_served(
                gallery.get("/files/video", params=key), "the clip's record beside it is missing", cfg.read_bytes()
            )
    assert gallery.get("/api/clip", params=key).json()["availability"] == "temporary"  # restored


@contextmanager
def rogue_run(env: dict[str, str], secret: Path, links: Path) -> Iterator[str]:
    """A real run of the rogue DAG (plain tasks returning a secret's path), removed from the DB afterwards."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    airflow(
        {**env, "HAPPYHORSE_IT_SECRET": str(secret), "HAPPYHORSE_IT_ROGUE_DIR": str(links)}, "dags", "test", ROGUE, DAY
    )
    try:
        yield run_ids([ROGUE])[ROGUE]
    finally:
        with create_session() as session:
            for model in (XComModel, TaskInstance, DagRun):
                session.execute(delete(model).where(model.dag_id == ROGUE))


def test_a_dag_whose_plain_task_returns_a_secrets_path_gets_nothing_of_it(
    gallery: Gallery, env: dict[str, str], tmp_path: Path
) -> None:
    secret = tmp_path / "api-server" / "airflow.cfg"
    secret.parent.mkdir()
    body = b"[api_auth]\njwt_secret = rogue-must-not-leak-41a\n[core]\nfernet_key = rogue-must-not-leak-9c0\n"
    secret.write_bytes(body)
    with rogue_run(env, secret, tmp_path / "links") as run_id:
        rows = {row["task_id"]: row for row in gallery.get("/api/clips", params={"dag_id": ROGUE}).json()["clips"]}
        assert set(rows) == {"plain", "linked"}  # listed: each pushed a job_id
        assert (tmp_path / "links" / "rogue.mp4").resolve() == secret
        for task_id in ("plain", "linked"):
            key = {"dag_id": ROGUE, "run_id": run_id, "task_id": task_id, "map_index": -1}
            # No record beside the secret: a record forged beside the symlinks does not count.
            assert_not_served(gallery.get("/files/video", params=key), "the clip's record beside it is missing", body)
            poster = gallery.get("/files/poster", params=key)
            assert_not_served(poster, "the clip's record beside it is missing", body)
    assert gallery.get("/api/clips", params={"dag_id": ROGUE}).json()["clips"] == []


# -- the extra link and the renders in flight ---------------------------------------------------------------


def test_the_extra_link_of_a_stored_clip_opens_its_page_here(gallery: Gallery) -> None:
    headers = {"Authorization": f"Bearer {gallery.tokens['viewer']}"}
    base = f"/api/v2/dags/happyhorse_it_videos/dagRuns/{gallery.run_ids['happyhorse_it_videos']}/taskInstances"
    link = gallery.client.get(f"{base}/stored/links", headers=headers).json()["extra_links"]["HappyHorse video"]
    assert link.startswith("/happyhorse/clip?dag_id=happyhorse_it_videos&run_id=manual__")
    assert link.endswith("&task_id=stored&map_index=-1")
    page = gallery.client.get(link, headers=headers)
    assert page.status_code == 200
    assert "<title>HappyHorse</title>" in page.text
    mapped = gallery.client.get(f"{base}/mapped/links", params={"map_index": 0}, headers=headers).json()["extra_links"]
    assert mapped["HappyHorse video"].startswith("http://127.0.0.1:")  # not stored: the temporary URL


@pytest.mark.parametrize("earlier_shape", [False, True], ids=["record", "kwargs of the earlier release"])
def test_renders_in_flight_are_the_deferred_tasks_on_our_trigger(gallery: Gallery, earlier_shape: bool) -> None:
    with render_in_flight("happyhorse_it_private", "n92inflight01", earlier_shape=earlier_shape):
        renders = gallery.get("/api/in-flight").json()["renders"]
        # Submitted long before this test ran: the same words the task log uses for an overdue render.
        assert renders[0].pop("progress").startswith("past the usual render time (~42 s) by ~")
        assert renders == [
            {
                "dag_id": "happyhorse_it_private",
                "run_id": gallery.run_ids["happyhorse_it_private"],
                "task_id": "private_clip",
                "map_index": -1,
                "job_id": "n92inflight01",
                "submitted_at": "2026-03-01T00:00:00+00:00",
                "waiting_since": "2026-03-01T00:00:00+00:00",
                "expected_finish": "2026-03-01T00:00:42+00:00",
                "deadline": "2026-03-01T01:00:00+00:00",
            }
        ]
        assert gallery.get("/api/in-flight", user="outsider").json()["renders"] == []
        assert DEFAULT_API_KEY not in json.dumps(renders)
