"""What Airflow calls each process's hostname (``[core] hostname_callable``) in a distributed cluster.

Every component of :class:`~harness.distributed.DistributedCluster` runs on this machine but is given a host of
its own (a loopback address, ``$HARNESS_HOSTNAME``); Airflow records it in the ``job`` rows (which triggerer
holds a trigger) and on task instances (which worker ran a try), as it would record separate machines. A task
process inherits its worker's.
"""

from __future__ import annotations

import os
import socket

HOSTNAME_VARIABLE = "HARNESS_HOSTNAME"


def component_hostname() -> str:
    """``$HARNESS_HOSTNAME``, else the machine's fully qualified name (Airflow's default)."""
    return os.environ.get(HOSTNAME_VARIABLE) or socket.getfqdn()
