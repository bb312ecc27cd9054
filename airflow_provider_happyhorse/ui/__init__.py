"""
The HappyHorse view in Airflow's UI (Airflow 3.1+): a FastAPI app mounted in the api-server and a
"HappyHorse" entry in the UI's navigation. ``plugin`` registers it; ``app`` holds the routes (every one
checks the caller through Airflow's auth manager); ``clips`` reads the metadata DB; ``ranges`` decides
HTTP byte ranges.
"""
