"""
The reliability suite (issue 7): crash, fault and bad-input trials on real Airflow processes.

``python -m reliability.run`` (``make reliability``) runs every trial against one real Airflow cluster
(``harness.airflow_cluster``) and one HappyHorse emulator per trial, prints a table of outcomes and counts,
and fails if any promise is broken: a job paid for twice, a clip lost or half-written, a run failed because
the API hiccupped, a bad request sent, an API key written anywhere.

- ``run``: the command; ``plan``: the trial counts (default and ``--full``); ``report``: rows and the table.
- ``lab``: the cluster, the emulators, and reading task instances, XComs and logs.
- ``trials/``: one module per family of trials; ``dags/``: their DAGs (``dagkit`` builds most of them).
- ``gateway``: faults the emulator cannot aim at one endpoint; ``bad_inputs``, ``ambiguous_faults``: tables.
"""
