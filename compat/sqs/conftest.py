"""A ferry with its AWS listener, and boto3 clients for it."""

import os

import boto3
import pytest
from ferryproc import ferry


@pytest.fixture(scope="session")
def endpoint():
    with ferry() as addrs:
        yield "http://" + addrs["aws"]


@pytest.fixture(scope="session")
def signed_endpoint():
    """A ferry that checks SigV4 signatures against one configured key."""
    with ferry("--aws-access-key-id", "AKIDFERRY", "--aws-secret-access-key", "s3cret/Key+value") as addrs:
        yield "http://" + addrs["aws"]


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
