"""Starts ferry for the test session, on loopback ports it picks."""

import contextlib
import os
import signal
import subprocess
import tempfile

import boto3
import pytest


@contextlib.contextmanager
def ferry(*extra):
    """A running ferry with its AWS listener; yields the endpoint URL and
    checks a clean exit on SIGTERM."""
    binary = os.environ.get("FERRY_BIN", "target/debug/ferry")
    data = tempfile.mkdtemp(prefix="ferry-compat-")
    proc = subprocess.Popen(
        [binary, "serve", "--data-dir", data, "--admin-listen", "off", "--aws-listen", "127.0.0.1:0", *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("listening aws "), f"unexpected first line: {line!r}"
        yield "http://" + line.split()[-1]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, "ferry exits cleanly on SIGTERM"


@pytest.fixture(scope="session")
def endpoint():
    with ferry() as url:
        yield url


@pytest.fixture(scope="session")
def signed_endpoint():
    """A ferry that checks SigV4 signatures against one configured key."""
    with ferry("--aws-access-key-id", "AKIDFERRY", "--aws-secret-access-key", "s3cret/Key+value") as url:
        yield url


@pytest.fixture()
def sqs(endpoint):
    client = boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    expected = os.environ.get("EXPECT_PROTOCOL")
    if expected:
        assert client.meta.service_model.protocol == expected
    return client
