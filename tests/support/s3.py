"""S3 on a loopback moto server for the tests that store or serve clips in object storage (connection ``aws_moto``)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CONN_ID = "aws_moto"


def forget_object_stores() -> None:
    """
    Airflow keeps one object store per protocol and connection id for the life of the process: a store made for
    an earlier test's server (another port) would be used again. Tests start each server with none kept.
    """
    from airflow.sdk.io import store

    store._STORE_CACHE.clear()


@contextmanager
def moto_s3(monkeypatch: pytest.MonkeyPatch, *buckets: str) -> Iterator[Any]:
    """A moto server on a free 127.0.0.1 port with ``buckets``, the ``aws_moto`` connection to it, a boto3 client."""
    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    extra = {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-east-1"}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    connection = {"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(connection))
    forget_object_stores()
    client = boto3.client("s3", aws_access_key_id="testing", aws_secret_access_key="testing", **extra)
    for bucket in buckets:
        client.create_bucket(Bucket=bucket)
    try:
        yield client
    finally:
        server.stop()
        forget_object_stores()
