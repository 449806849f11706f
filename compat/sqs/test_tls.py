"""boto3 over HTTPS, verifying ferry's certificate against a CA made by
trustme (as it would a real endpoint's)."""

import boto3
import botocore.exceptions
import pytest
from ferryproc import ferry, tls_flags


@pytest.fixture(scope="module")
def https(tmp_path_factory):
    """(CA bundle path, https endpoint)."""
    d = tmp_path_factory.mktemp("tls")
    _, flags = tls_flags(str(d))
    with ferry(
        *flags,
        listen=("aws-tls",),
    ) as addrs:
        port = addrs["aws-tls"].rsplit(":", 1)[1]
        yield str(d / "ca.pem"), f"https://localhost:{port}"


def client(endpoint, verify):
    return boto3.client(
        "sqs", endpoint_url=endpoint, region_name="us-east-1", verify=verify,
        aws_access_key_id="test", aws_secret_access_key="test",
    )


def test_send_and_receive_over_https(https):
    ca, endpoint = https
    sqs = client(endpoint, ca)
    url = sqs.create_queue(QueueName="tls-queue")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="encrypted in transit")
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
    assert got[0]["Body"] == "encrypted in transit"


def test_an_untrusted_certificate_is_refused_by_the_client(https):
    _, endpoint = https
    with pytest.raises(botocore.exceptions.SSLError):
        client(endpoint, True).list_queues()
