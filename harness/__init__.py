"""Test harnesses that run real Airflow processes; see :mod:`harness.airflow_cluster`.

:class:`AirflowCluster` is composed of :class:`Processes` (:mod:`harness.processes`), :class:`RestClient`
(:mod:`harness.rest`), :class:`MetadataDB` (:mod:`harness.metadata_db`) and the observers
(:mod:`harness.observers`).
"""

from harness.airflow_cluster import AirflowCluster
from harness.common import ClusterError, ClusterStartError, ClusterTimeout, TaskKey
from harness.metadata_db import MetadataDB
from harness.observers import StateChange, StateRecorder, WorkerRun
from harness.processes import ALL_COMPONENTS, Component, ComponentSpec, Processes, TaskProcess
from harness.rest import FINISHED_RUN_STATES, ApiError, ImportErrorInfo, RestClient, TaskInstanceInfo

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
    "ImportErrorInfo",
    "MetadataDB",
    "Processes",
    "RestClient",
    "StateChange",
    "StateRecorder",
    "TaskInstanceInfo",
    "TaskKey",
    "TaskProcess",
    "WorkerRun",
]
