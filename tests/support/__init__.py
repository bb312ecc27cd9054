"""
What the tests share: one fake HappyHorse (:mod:`.service`), one fake clock (:mod:`.clock`), doubles
of Airflow's task context (:mod:`.context`) and a real loopback HTTP server (:mod:`.loopback`).
Test modules import from here, never from a conftest.
"""
