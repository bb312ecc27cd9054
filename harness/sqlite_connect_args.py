"""
Connection arguments for a cluster's SQLite database, which every Airflow process of the cluster imports
through ``[database] sql_alchemy_connect_args`` (and ``..._async``): wait up to 30 s for another
process's write lock instead of sqlite3's default 5 s.

The scheduler, DAG processor, triggerer, API server and task processes all write to one SQLite file. On
two busy cores a write can wait more than 5 s for the lock, and Airflow then fails the request. A clean
clone's ``.ci/run`` failed once that way: creating a DAG run got "Database error" from the API server 5 s
after it was sent, while another run's tasks were starting.
"""

SYNC: dict[str, object] = {"timeout": 30.0}
ASYNC: dict[str, object] = {"timeout": 30.0}
