"""Test harnesses that run real Airflow processes; see :mod:`harness.airflow_cluster`."""

from harness.airflow_cluster import (
    ALL_COMPONENTS,
    AirflowCluster,
    ApiError,
    ClusterError,
    ClusterStartError,
    ClusterTimeout,
    Component,
    ImportErrorInfo,
    StateChange,
    StateRecorder,
    TaskInstanceInfo,
    TaskKey,
    TaskProcess,
    WorkerRun,
)

__all__ = [
    "ALL_COMPONENTS",
    "AirflowCluster",
    "ApiError",
    "ClusterError",
    "ClusterStartError",
    "ClusterTimeout",
    "Component",
    "ImportErrorInfo",
    "StateChange",
    "StateRecorder",
    "TaskInstanceInfo",
    "TaskKey",
    "TaskProcess",
    "WorkerRun",
]
