"""The SQS API with boto3 (which checks every MD5 itself)."""

import base64
import json
import threading
import time
import uuid

import pytest
from botocore.exceptions import ClientError


def name(prefix="q"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def test_queue_lifecycle(sqs, endpoint):
    n = name()
    url = sqs.create_queue(QueueName=n, Attributes={"VisibilityTimeout": "45"}, tags={"team": "core"})["QueueUrl"]
    assert url.endswith(f"/000000000000/{n}")
    assert sqs.create_queue(QueueName=n, Attributes={"VisibilityTimeout": "45"})["QueueUrl"] == url
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=n, Attributes={"VisibilityTimeout": "46"})
    assert e.value.response["Error"]["Code"] in ("QueueAlreadyExists", "QueueNameExists")
    assert sqs.get_queue_url(QueueName=n)["QueueUrl"] == url
    assert url in sqs.list_queues(QueueNamePrefix=n[:6])["QueueUrls"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["VisibilityTimeout"] == "45"
    assert attrs["QueueArn"] == f"arn:aws:sqs:us-east-1:000000000000:{n}"
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "2", "MessageRetentionPeriod": "600"})
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["DelaySeconds", "MessageRetentionPeriod"])["Attributes"]
    assert attrs == {"DelaySeconds": "2", "MessageRetentionPeriod": "600"}
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "core"}
    sqs.tag_queue(QueueUrl=url, Tags={"env": "test"})
    sqs.untag_queue(QueueUrl=url, TagKeys=["team"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"env": "test"}
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName=n)


def test_messages_with_attributes_round_trip(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    sent = sqs.send_message(
        QueueUrl=url,
        MessageBody="hello ✓",
        MessageAttributes={
            "s": {"DataType": "String", "StringValue": "text"},
            "n": {"DataType": "Number", "StringValue": "12.50"},
            "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
            "c": {"DataType": "String.custom", "StringValue": "x"},
        },
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1-abc"}},
    )
    got = sqs.receive_message(QueueUrl=url, AttributeNames=["All"], MessageAttributeNames=["All"])["Messages"]
    m = got[0]
    assert m["Body"] == "hello ✓"
    assert m["MessageId"] == sent["MessageId"]
    assert m["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert m["MessageAttributes"]["n"] == {"DataType": "Number", "StringValue": "12.50"}
    assert m["MessageAttributes"]["b"]["BinaryValue"] == b"\x00\x01"
    assert m["MessageAttributes"]["c"]["DataType"] == "String.custom"
    assert m["Attributes"]["ApproximateReceiveCount"] == "1"
    assert m["Attributes"]["AWSTraceHeader"] == "Root=1-abc"
    assert int(m["Attributes"]["SentTimestamp"]) > 1_600_000_000_000
    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert "Messages" not in sqs.receive_message(QueueUrl=url)


def test_visibility_and_redelivery(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="again")
    first = sqs.receive_message(QueueUrl=url, VisibilityTimeout=30)["Messages"][0]
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0)
    second = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"])["Messages"][0]
    assert second["Attributes"]["ApproximateReceiveCount"] == "2"
    assert second["ReceiptHandle"] != first["ReceiptHandle"]
    with pytest.raises(ClientError) as e:
        sqs.delete_message(QueueUrl=url, ReceiptHandle="garbage")
    assert e.value.response["Error"]["Code"] == "ReceiptHandleIsInvalid"


def test_dead_letter_queue(sqs):
    dlq = sqs.create_queue(QueueName=name("dlq"))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    src = sqs.create_queue(
        QueueName=name("src"),
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})},
    )["QueueUrl"]
    sqs.send_message(QueueUrl=src, MessageBody="poison")
    for _ in range(2):
        m = sqs.receive_message(QueueUrl=src)["Messages"][0]
        sqs.change_message_visibility(QueueUrl=src, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    assert "Messages" not in sqs.receive_message(QueueUrl=src)
    dead = sqs.receive_message(QueueUrl=dlq, AttributeNames=["All"])["Messages"][0]
    assert dead["Body"] == "poison"
    assert dead["Attributes"]["DeadLetterQueueSourceArn"].endswith(src.rsplit("/", 1)[1])
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [src]


def test_fifo_order_and_deduplication(sqs):
    url = sqs.create_queue(
        QueueName=name("f") + ".fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    ids = [sqs.send_message(QueueUrl=url, MessageBody=f"m{i}", MessageGroupId="g")["SequenceNumber"] for i in range(3)]
    assert ids == sorted(ids)
    dup = sqs.send_message(QueueUrl=url, MessageBody="m0", MessageGroupId="g")
    assert dup["SequenceNumber"] == ids[0]
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in got] == ["m0", "m1", "m2"]
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x")
    assert e.value.response["Error"]["Code"] == "MissingParameter"


def test_batches(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    r = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[{"Id": f"e{i}", "MessageBody": f"b{i}"} for i in range(10)],
    )
    assert len(r["Successful"]) == 10
    got = []
    while len(got) < 10:
        got += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    r = sqs.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[{"Id": f"v{i}", "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 60} for i, m in enumerate(got)],
    )
    assert len(r["Successful"]) == 10
    r = sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[{"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
    )
    assert len(r["Successful"]) == 10
    with pytest.raises(ClientError) as e:
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": f"e{i}", "MessageBody": "x"} for i in range(11)])
    assert "TooManyEntriesInBatchRequest" in e.value.response["Error"]["Code"]


def test_long_polling_returns_early(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    threading.Timer(0.3, lambda: sqs.send_message(QueueUrl=url, MessageBody="late")).start()
    started = time.monotonic()
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10)
    assert got["Messages"][0]["Body"] == "late"
    assert time.monotonic() - started < 9


def test_purge(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=str(i))
    sqs.purge_queue(QueueUrl=url)
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    with pytest.raises(ClientError) as e:
        sqs.purge_queue(QueueUrl=url)
    assert "PurgeQueueInProgress" in e.value.response["Error"]["Code"]


def test_bad_input_gets_sqs_errors(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=name(), Attributes={"FifoQueue": "false"})
    assert e.value.response["Error"]["Code"] == "InvalidAttributeName"
    with pytest.raises(ClientError) as e:
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=11)
    assert e.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="bad \u0000 char")
    assert e.value.response["Error"]["Code"] == "InvalidMessageContents"
    with pytest.raises(ClientError) as e:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "-1"})
    assert e.value.response["Error"]["Code"] == "InvalidAttributeValue"
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x" * 1_048_577)
    assert e.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_redrive_with_a_move_task(sqs):
    dlq = sqs.create_queue(QueueName=name("dlq"))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    src = sqs.create_queue(
        QueueName=name("src"),
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})},
    )["QueueUrl"]
    for i in range(3):
        sqs.send_message(QueueUrl=src, MessageBody=f"m{i}")
    for m in sqs.receive_message(QueueUrl=src, MaxNumberOfMessages=10)["Messages"]:
        sqs.change_message_visibility(QueueUrl=src, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    assert "Messages" not in sqs.receive_message(QueueUrl=src)
    with pytest.raises(ClientError) as e:
        sqs.start_message_move_task(SourceArn=dlq_arn.replace(dlq_arn.rsplit(":", 1)[1], "nope"))
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    handle = sqs.start_message_move_task(SourceArn=dlq_arn)["TaskHandle"]
    assert handle
    deadline = time.monotonic() + 10
    while True:
        task = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"][0]
        if task["Status"] == "COMPLETED" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert task["Status"] == "COMPLETED"
    assert task["ApproximateNumberOfMessagesMoved"] == 3
    back = sqs.receive_message(QueueUrl=src, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in back) == ["m0", "m1", "m2"]
    with pytest.raises(ClientError) as e:
        sqs.cancel_message_move_task(TaskHandle="not-a-handle")
    assert e.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_permissions_edit_the_policy(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    sqs.add_permission(QueueUrl=url, Label="share", AWSAccountIds=["111122223333"], Actions=["SendMessage"])
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"])
    assert policy["Statement"][0]["Sid"] == "share"
    assert policy["Statement"][0]["Action"] == "SQS:SendMessage", "one action is a plain string, as AWS writes it"
    with pytest.raises(ClientError) as e:
        sqs.add_permission(QueueUrl=url, Label="share", AWSAccountIds=["1"], Actions=["SendMessage"])
    assert e.value.response["Error"]["Code"] == "InvalidParameterValue"
    sqs.remove_permission(QueueUrl=url, Label="share")
    assert "Policy" not in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def test_a_deleted_name_is_reusable_only_after_a_minute(sqs):
    n = name()
    url = sqs.create_queue(QueueName=n)["QueueUrl"]
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=n)
    assert "QueueDeletedRecently" in e.value.response["Error"]["Code"]


def test_visibility_is_capped_at_twelve_hours_from_the_receive(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="long job")
    m = sqs.receive_message(QueueUrl=url)["Messages"][0]
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=43200)
    time.sleep(1.2)
    with pytest.raises(ClientError) as e:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=43200)
    assert e.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_fifo_receive_retries_with_the_same_attempt_id(sqs):
    url = sqs.create_queue(
        QueueName=name("a") + ".fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}", MessageGroupId=f"g{i}")
    first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, ReceiveRequestAttemptId="try-1")["Messages"]
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, ReceiveRequestAttemptId="try-1")["Messages"]
    assert [m["ReceiptHandle"] for m in again] == [m["ReceiptHandle"] for m in first]
    other = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, ReceiveRequestAttemptId="try-2")["Messages"]
    assert [m["Body"] for m in other] == ["m2"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first[0]["ReceiptHandle"])
    fresh = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, ReceiveRequestAttemptId="try-1")
    assert fresh.get("Messages", []) != first, "a deleted message ends the retry"


def test_a_fifo_batch_entry_without_a_group_fails_the_whole_batch(sqs):
    url = sqs.create_queue(
        QueueName=name("b") + ".fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    with pytest.raises(ClientError) as e:
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": "ok", "MessageBody": "x", "MessageGroupId": "g"}, {"Id": "nogroup", "MessageBody": "y"}],
        )
    assert e.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert e.value.response["Error"]["Message"] == "The request must contain the parameter MessageGroupId."
    assert "Messages" not in sqs.receive_message(QueueUrl=url), "nothing of the batch was sent"
