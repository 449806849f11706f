"""A queue that names its own key (KmsMasterKeyId), through boto3: its
messages are sealed with that key alone; an id that names no key the broker
holds is taken and reported, as AWS takes any, with the queue sealed as the
journal is; and the broker will not start without the key while messages
it sealed are on disk."""

import os
import subprocess

import pytest
from botocore.exceptions import ClientError
from ferryproc import LISTENERS, ferry, found_in, sqs_client

SECRET = b"card 4111-1111-1111-1111"


def refused(data):
    """What ferry says when it will not start on `data` (bounded)."""
    binary = os.environ.get("FERRY_BIN", "target/debug/ferry")
    flags = [f for name in LISTENERS for f in (f"--{name}-listen", "off")]
    out = subprocess.run(
        [binary, "serve", "--data-dir", data, *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0, "it must not start"
    return out.stderr


def test_a_queue_sealed_with_its_own_kms_key(tmp_path):
    key = tmp_path / "orders.key"
    key.write_text(os.urandom(32).hex())
    data = str(tmp_path / "data")
    flags = ("--encryption-queue-key", f"orders={key}")
    with ferry(*flags, data=data) as addrs:
        sqs = sqs_client(addrs)
        typo = sqs.create_queue(QueueName="typo", Attributes={"KmsMasterKeyId": "alias/ordres"})["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=typo, AttributeNames=["All"])["Attributes"]
        assert attrs["KmsMasterKeyId"] == "alias/ordres"
        assert attrs["KmsDataKeyReusePeriodSeconds"] == "300"
        sqs.send_message(QueueUrl=typo, MessageBody="under no key of its own")

        url = sqs.create_queue(QueueName="orders", Attributes={"KmsMasterKeyId": "alias/orders"})["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attrs["KmsMasterKeyId"] == "alias/orders"
        # A queue sealed under a key of its own does not lose it to an id
        # that names none.
        with pytest.raises(ClientError) as e:
            sqs.set_queue_attributes(QueueUrl=url, Attributes={"KmsMasterKeyId": "alias/ordres"})
        assert e.value.response["Error"]["Code"] == "InvalidAttributeValue"
        logs = sqs.create_queue(QueueName="logs")["QueueUrl"]
        arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        sqs.set_queue_attributes(QueueUrl=logs, Attributes={"KmsMasterKeyId": arn})
        got = sqs.get_queue_attributes(QueueUrl=logs, AttributeNames=["KmsMasterKeyId"])["Attributes"]
        assert got["KmsMasterKeyId"] == arn

        sqs.send_message(QueueUrl=url, MessageBody=SECRET.decode())
        sqs.send_message(QueueUrl=logs, MessageBody="a log line in the clear")

    assert not found_in(data, SECRET), "the keyed queue's body is sealed"
    assert found_in(data, b"a log line in the clear"), "the other queue's is not"
    assert found_in(data, b"under no key of its own"), "no journal key: an unknown KMS id seals nothing"

    err = refused(data)
    assert "'orders'" in err, err

    with ferry(*flags, data=data) as addrs:
        sqs = sqs_client(addrs)
        url = sqs.get_queue_url(QueueName="orders")["QueueUrl"]
        got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"]
        assert got[0]["Body"] == SECRET.decode()
