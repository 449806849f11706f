"""Under the broker's resource alarm (here: a disk free-space limit no disk
meets), senders get SQS's RequestThrottled, which the SDKs retry with
backoff, while receivers go on draining."""

import time

import boto3
import botocore.config
import botocore.exceptions
import pytest
from ferryproc import ferry


@pytest.fixture(scope="module")
def short_of_disk():
    with ferry("--disk-free-limit", str(1 << 60), listen=("aws", "admin")) as addrs:
        yield addrs


def test_senders_are_throttled_and_receivers_drain(short_of_disk):
    sqs = boto3.client(
        "sqs", endpoint_url="http://" + short_of_disk["aws"], region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
        config=botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    url = sqs.create_queue(QueueName="under-alarm")["QueueUrl"]
    # The disk check runs every second: wait for the alarm (bounded).
    deadline = time.monotonic() + 10
    while True:
        try:
            sqs.send_message(QueueUrl=url, MessageBody="before the alarm")
        except botocore.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] == "RequestThrottled", e.response
            assert "disk" in e.response["Error"]["Message"]
            break
        assert time.monotonic() < deadline, "the alarm was never raised"
        time.sleep(0.2)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "x"}])
    assert e.value.response["Error"]["Code"] == "RequestThrottled"
    # Whatever got in before the alarm can still be taken out.
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    for m in got:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
