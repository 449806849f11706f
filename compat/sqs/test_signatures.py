"""SigV4: with credentials configured, boto3's signed requests pass and
anything else is refused with SQS's errors."""

import boto3
import pytest
from botocore.exceptions import ClientError


def client(endpoint, key, secret):
    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )


def test_the_right_key_works(signed_endpoint):
    sqs = client(signed_endpoint, "AKIDFERRY", "s3cret/Key+value")
    url = sqs.create_queue(QueueName="signed")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="signed body", MessageAttributes={"a": {"DataType": "String", "StringValue": "b"}})
    assert sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "signed body"


def test_a_wrong_secret_is_refused(signed_endpoint):
    with pytest.raises(ClientError) as e:
        client(signed_endpoint, "AKIDFERRY", "wrong").list_queues()
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_an_unknown_key_is_refused(signed_endpoint):
    with pytest.raises(ClientError) as e:
        client(signed_endpoint, "AKIDOTHER", "s3cret/Key+value").list_queues()
    assert e.value.response["Error"]["Code"] == "InvalidClientTokenId"
