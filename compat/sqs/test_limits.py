"""The broker's cap on what a queue may hold (--max-queue-length), through
boto3: past it SendMessage is OverLimit and a batch fails the entries over
it, and receiving makes room again only once messages are deleted."""

import pytest
from botocore.exceptions import ClientError
from ferryproc import ferry, sqs_client


def test_a_full_queue_refuses_sends_until_messages_are_deleted():
    with ferry("--max-queue-length", "2") as addrs:
        sqs = sqs_client(addrs)
        url = sqs.create_queue(QueueName="capped")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="1")
        batch = sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": "a", "MessageBody": "2"}, {"Id": "b", "MessageBody": "3"}],
        )
        assert [e["Id"] for e in batch["Successful"]] == ["a"]
        assert [e["Id"] for e in batch.get("Failed", [])] == ["b"]
        with pytest.raises(ClientError) as e:
            sqs.send_message(QueueUrl=url, MessageBody="4")
        assert e.value.response["Error"]["Code"] == "OverLimit"

        # In flight still counts; deleted does not.
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
        with pytest.raises(ClientError):
            sqs.send_message(QueueUrl=url, MessageBody="5")
        sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
        sqs.send_message(QueueUrl=url, MessageBody="6")
