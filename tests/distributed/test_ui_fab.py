"""
The HappyHorse view's access control under the FAB auth manager, the one with per-DAG permissions (a DAG's
``access_control``): Airflow's real api-server application (``create_app``, in process) on a real metadata DB
(SQLite, migrated by ``airflow db migrate``, FAB's tables included), FAB roles and users made with FAB's own CLI,
DAG permissions synced by FAB when `airflow dags test` writes the DAGs, and bearer tokens from FAB's
``POST /auth/token``. The user whose role DAG A's access_control names reads A's clip, its files and its render in
flight; the other gets 403 and sees nothing of A in the gallery, the spend or the renders in flight; anonymous
requests get 401. A clip is a task's result XCom, so the view also asks FAB for XCom read ("can_read" on "XComs",
a global permission that access_control cannot name): both roles are granted it, and a third user, who may read
every DAG but no XCom, gets 403 and no row.

Needs the FAB provider (``.venv-distributed``: ``make e2e-distributed``); skipped in ``make test``'s venv.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("airflow.providers.fab", reason="needs the FAB provider: make e2e-distributed")

from happyhorse_emulator import EmulatorServer
from support.gallery import DAY, Gallery, airflow, airflow_env, render_in_flight, run_dags, run_ids

DAGS = Path(__file__).parent / "fab_dags"
PRIVATE = "happyhorse_fab_private"  # DAG A: its access_control names happyhorse_private_readers only
SHARED = "happyhorse_fab_shared"  # DAG B: both roles may read it
FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
# Each user's one role: no Viewer or other built-in role, whose global "DAGs" read would let them read every DAG.
ROLES = {
    "reader": "happyhorse_private_readers",
    "outsider": "happyhorse_shared_readers",
    "dag_reader": "happyhorse_dag_readers",  # every DAG ("can_read" on "DAGs"), no XCom
}
FILES = ("/api/clip", "/files/video", "/files/poster", "/clip")


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory, emulator_server: EmulatorServer) -> Iterator[Gallery]:
    output = tmp_path_factory.mktemp("clips")
    # Every command runs with FAB as the auth manager: `db migrate` then migrates FAB's tables too, and writing a
    # DAG to the DB syncs its access_control into FAB's permissions.
    env = airflow_env(DAGS, emulator_server, output, AIRFLOW__CORE__AUTH_MANAGER=FAB)
    airflow(env, "db", "migrate")
    airflow(env, "roles", "create", *ROLES.values())  # before the DAGs: FAB rejects an access_control to no role
    run_dags(env, (PRIVATE, SHARED))
    airflow(env, "sync-perm")  # FAB's built-in resources ("XComs", "DAGs") exist before a role is granted one
    readers = (ROLES["reader"], ROLES["outsider"])
    airflow(env, "roles", "add-perms", *readers, "-r", "XComs", "-a", "can_read")
    airflow(env, "roles", "add-perms", ROLES["dag_reader"], "-r", "DAGs", "-a", "can_read")
    passwords = {user: secrets.token_urlsafe(16) for user in ROLES}
    for user, role in ROLES.items():
        names = ("-f", user, "-l", "Test", "-e", f"{user}@example.com")
        # --password=...: a random password may begin with "-", which argparse would take for an option.
        airflow(env, "users", "create", "-u", user, "-r", role, f"--password={passwords[user]}", *names)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__AUTH_MANAGER", FAB)
        # This process read its Airflow config before the first `airflow` command wrote one with a secret.
        patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(32))
        patch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS))
        from airflow.api_fastapi.app import create_app
        from fastapi.testclient import TestClient

        with TestClient(create_app()) as client:
            tokens = {}
            for user, password in passwords.items():
                login = client.post("/auth/token", json={"username": user, "password": password})
                assert login.status_code == 201, login.text
                tokens[user] = login.json()["access_token"]
            assert client.post("/auth/token", json={"username": "reader", "password": "wrong"}).status_code == 401
            yield Gallery(client, output, tokens, run_ids((PRIVATE, SHARED)), default_user="reader")


def test_fab_synced_each_dags_access_control_into_its_roles(gallery: Gallery) -> None:
    from airflow.providers.fab.auth_manager.models import Role
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        granted = {
            role.name: sorted(f"{perm.action.name} {perm.resource.name}" for perm in role.permissions)
            for role in session.scalars(select(Role).where(Role.name.in_(ROLES.values()))).unique()
        }
    # Website: the home page, which FAB grants every custom role when its app starts; "DAGs" (every DAG) only for
    # the third role, and "XComs" (granted above) for the two readers.
    assert granted == {
        "happyhorse_private_readers": [
            f"can_read DAG:{PRIVATE}",
            f"can_read DAG:{SHARED}",
            "can_read Website",
            "can_read XComs",
        ],
        "happyhorse_shared_readers": [f"can_read DAG:{SHARED}", "can_read Website", "can_read XComs"],
        "happyhorse_dag_readers": ["can_read DAGs", "can_read Website"],
    }


@pytest.mark.parametrize("path", ["/", "/api/clips", "/api/spend", "/api/in-flight", *FILES])
def test_anonymous_requests_get_401(gallery: Gallery, path: str) -> None:
    response = gallery.get(path, user=None, params=gallery.key(PRIVATE, "private_clip"))
    assert response.status_code == 401
    assert b"ftyp" not in response.content


def test_the_reader_of_dag_a_gets_its_row_clip_and_files(gallery: Gallery) -> None:
    rows = gallery.get("/api/clips", user="reader").json()["clips"]
    assert sorted((row["dag_id"], row["run_id"], row["task_id"]) for row in rows) == [
        (PRIVATE, gallery.run_ids[PRIVATE], "private_clip"),
        (SHARED, gallery.run_ids[SHARED], "shared_clip"),
    ]
    private = gallery.key(PRIVATE, "private_clip")
    clip = gallery.get("/api/clip", user="reader", params=private)
    assert clip.status_code == 200
    assert (clip.json()["dag_id"], clip.json()["availability"], clip.json()["has_poster"]) == (PRIVATE, "stored", True)
    video = gallery.get("/files/video", user="reader", params=private)
    assert video.status_code == 200
    assert video.content == (gallery.output / f"private-{DAY}.mp4").read_bytes()
    poster = gallery.get("/files/poster", user="reader", params=private)
    assert poster.status_code == 200
    assert poster.content == (gallery.output / f"private-{DAY}.poster.jpg").read_bytes()
    assert gallery.get("/clip", user="reader", params=private).status_code == 200
    spend = gallery.get("/api/spend", user="reader").json()
    assert set(spend["per_day"]) == {PRIVATE, SHARED}
    assert spend["total_credits"] == sum(row["credits_estimate"] for row in rows)


def test_a_user_fab_does_not_let_read_dag_a_gets_403_and_nothing_of_it(gallery: Gallery) -> None:
    rows = gallery.get("/api/clips", user="outsider").json()["clips"]
    assert [(row["dag_id"], row["task_id"]) for row in rows] == [(SHARED, "shared_clip")]
    assert gallery.get("/api/clips", user="outsider", params={"dag_id": PRIVATE}).json()["clips"] == []
    private = gallery.key(PRIVATE, "private_clip")
    for path in FILES:
        response = gallery.get(path, user="outsider", params=private)
        assert response.status_code == 403, path
        assert b"ftyp" not in response.content
    spend = gallery.get("/api/spend", user="outsider").json()
    assert set(spend["per_day"]) == set(spend["per_month"]) == {SHARED}
    assert spend["clips"] == 1
    assert spend["total_credits"] == rows[0]["credits_estimate"]


def test_a_user_fab_lets_read_every_dag_but_no_xcom_gets_403_and_no_row(gallery: Gallery) -> None:
    assert gallery.get("/api/clips", user="dag_reader").json()["clips"] == []
    assert gallery.get("/api/spend", user="dag_reader").json()["per_day"] == {}
    for dag_id, task_id in ((PRIVATE, "private_clip"), (SHARED, "shared_clip")):
        for path in FILES:
            response = gallery.get(path, user="dag_reader", params=gallery.key(dag_id, task_id))
            assert response.status_code == 403, path
            assert "XComs" in response.json()["detail"]
            assert b"ftyp" not in response.content


def test_only_the_reader_sees_dag_as_render_in_flight(gallery: Gallery) -> None:
    with render_in_flight(PRIVATE, "fabinflight01"):
        seen = gallery.get("/api/in-flight", user="reader").json()["renders"]
        assert [(render["dag_id"], render["job_id"]) for render in seen] == [(PRIVATE, "fabinflight01")]
        assert gallery.get("/api/in-flight", user="outsider").json()["renders"] == []
