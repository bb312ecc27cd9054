"""Test harnesses that run real Airflow processes; see :mod:`harness.airflow_cluster`.

:class:`AirflowCluster` is composed of :class:`Processes` (:mod:`harness.processes`), :class:`RestClient`
(:mod:`harness.rest`), :class:`MetadataDB` (:mod:`harness.metadata_db`) and the observers
(:mod:`harness.observers`). :class:`DistributedCluster` (:mod:`harness.distributed`) is one on PostgreSQL and
CeleryExecutor, whose services (:mod:`harness.services`) it starts itself.
"""

from harness.airflow_cluster import AirflowCluster
from harness.common import ClusterError, ClusterStartError, ClusterTimeout, TaskKey
from harness.distributed import DistributedCluster
from harness.metadata_db import MetadataDB, PostgresMetadataDB
from harness.observers import StateChange, StateRecorder, WorkerRun
from harness.processes import ALL_COMPONENTS, Component, ComponentSpec, Processes, TaskProcess, processes_in
from harness.rest import FINISHED_RUN_STATES, ApiError, ImportErrorInfo, RestClient, TaskInstanceInfo
from harness.services import PostgresServer, RedisServer

__all__ = [
    "ALL_COMPONENTS",
    "FINISHED_RUN_STATES",
    "AirflowCluster",
    "ApiError",
    "ClusterError",
    "ClusterStartError",
    "ClusterTimeout",
    "Component",
    "ComponentSpec",
    "DistributedCluster",
    "ImportErrorInfo",
    "MetadataDB",
    "PostgresMetadataDB",
    "PostgresServer",
    "Processes",
    "RedisServer",
    "RestClient",
    "StateChange",
    "StateRecorder",
    "TaskInstanceInfo",
    "TaskKey",
    "TaskProcess",
    "WorkerRun",
    "processes_in",
]
