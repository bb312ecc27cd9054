"""Fixtures for tests that run real Airflow processes (see harness/airflow_cluster.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from harness.airflow_cluster import AirflowCluster

ClusterFactory = Callable[..., AirflowCluster]


@pytest.fixture(scope="session")
def airflow_cluster_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterFactory]:
    """Start clusters on demand; every cluster started here is stopped at the end of the session.

    ``factory(dags_folder, extra_env=None, **kwargs)`` returns a started, healthy
    :class:`AirflowCluster` with a fresh ``AIRFLOW_HOME``; ``kwargs`` go to its constructor.
    Scope the clusters you need with your own module- or session-scoped fixture around it.
    """
    started: list[AirflowCluster] = []

    def factory(dags_folder: Path, extra_env: Mapping[str, str] | None = None, **kwargs: Any) -> AirflowCluster:
        cluster = AirflowCluster(tmp_path_factory.mktemp("airflow-home"), dags_folder, extra_env, **kwargs)
        cluster.start()
        started.append(cluster)
        return cluster

    yield factory
    errors = []
    for cluster in reversed(started):
        try:
            cluster.stop()
        except Exception as err:  # stop the others before reporting
            errors.append(err)
    if errors:
        raise errors[0]
