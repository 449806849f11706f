"""SQS behaviours that SDK users' edge cases depend on (issue 22), with boto3."""

import time
import uuid

import pytest
from botocore.exceptions import ClientError


def name(prefix="f"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def test_an_older_receipt_handle_still_names_the_message(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="twice")
    first = sqs.receive_message(QueueUrl=url, VisibilityTimeout=1)["Messages"][0]
    time.sleep(1.2)
    # Its visibility ran out: the old handle hides it again.
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=30)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0)
    # Hidden and shown again by the old handle, it comes back once.
    shown = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)["Messages"]
    assert len(shown) == 1, shown
    second = shown[0]
    assert second["ReceiptHandle"] != first["ReceiptHandle"]
    # Received again since: the first handle still changes and deletes it.
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0)
    third = sqs.receive_message(QueueUrl=url, VisibilityTimeout=30)["Messages"][0]
    ok = sqs.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[{"Id": "old", "ReceiptHandle": first["ReceiptHandle"], "VisibilityTimeout": 60}],
    )
    assert [e["Id"] for e in ok["Successful"]] == ["old"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])
    assert third["Body"] == "twice"
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0", "deleted by its first handle"


def test_a_handle_that_never_was_one_is_invalid_in_aws_words(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    for call in (
        lambda: sqs.delete_message(QueueUrl=url, ReceiptHandle="garbage"),
        lambda: sqs.change_message_visibility(QueueUrl=url, ReceiptHandle="garbage", VisibilityTimeout=5),
    ):
        with pytest.raises(ClientError) as e:
            call()
        err = e.value.response["Error"]
        assert err["Code"] == "ReceiptHandleIsInvalid"
        assert err["Message"] == 'The input receipt handle "garbage" is not a valid receipt handle.'
    failed = sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": "x", "ReceiptHandle": "garbage"}])["Failed"]
    assert failed[0]["Code"] == "ReceiptHandleIsInvalid"
    assert failed[0]["Message"] == 'The input receipt handle "garbage" is not a valid receipt handle.'


def test_content_based_deduplication_is_the_bodys_sha256_in_one_space_with_given_ids(sqs):
    import hashlib

    url = sqs.create_queue(
        QueueName=name() + ".fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    digest = hashlib.sha256(b"same body").hexdigest()
    first = sqs.send_message(QueueUrl=url, MessageBody="same body", MessageGroupId="g")
    # An explicit id equal to the body's digest is the same send.
    again = sqs.send_message(
        QueueUrl=url, MessageBody="another body", MessageGroupId="g", MessageDeduplicationId=digest
    )
    assert again["MessageId"] == first["MessageId"]
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    assert [m["Body"] for m in got] == ["same body"]
    assert got[0]["Attributes"]["MessageDeduplicationId"] == digest


def batch_error(call):
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]


def test_what_fails_a_whole_send_batch(sqs):
    fifo = sqs.create_queue(QueueName=name() + ".fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    err = batch_error(
        lambda: sqs.send_message_batch(
            QueueUrl=fifo,
            Entries=[
                {"Id": "a", "MessageBody": "x", "MessageGroupId": "g", "MessageDeduplicationId": "d"},
                {"Id": "b", "MessageBody": "y", "MessageGroupId": "g"},
            ],
        )
    )
    assert err["Code"] == "InvalidParameterValue"
    assert err["Message"] == (
        "The queue should either have ContentBasedDeduplication enabled or "
        "MessageDeduplicationId provided explicitly"
    )
    assert "Messages" not in sqs.receive_message(QueueUrl=fifo)

    plain = sqs.create_queue(QueueName=name())["QueueUrl"]
    big = "x" * (1024 * 1024 + 1)
    err = batch_error(lambda: sqs.send_message_batch(QueueUrl=plain, Entries=[{"Id": "one", "MessageBody": big}]))
    assert err["Code"] == "AWS.SimpleQueueService.BatchRequestTooLong" or err["Code"] == "BatchRequestTooLong"
    assert err["Message"] == f"Batch requests cannot be longer than 1048576 bytes. You have sent {len(big)} bytes."


def test_an_empty_batch_is_named_by_its_entries(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    for call, kind in (
        (lambda: sqs.send_message_batch(QueueUrl=url, Entries=[]), "SendMessageBatchRequestEntry"),
        (lambda: sqs.delete_message_batch(QueueUrl=url, Entries=[]), "DeleteMessageBatchRequestEntry"),
        (
            lambda: sqs.change_message_visibility_batch(QueueUrl=url, Entries=[]),
            "ChangeMessageVisibilityBatchRequestEntry",
        ),
    ):
        err = batch_error(call)
        assert err["Message"] == f"There should be at least one {kind} in the request.", err


def test_every_answer_carries_a_request_id(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    ok = sqs.send_message(QueueUrl=url, MessageBody="x")
    assert ok["ResponseMetadata"]["RequestId"]
    assert ok["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"] == ok["ResponseMetadata"]["RequestId"]
    with pytest.raises(ClientError) as e:
        sqs.get_queue_url(QueueName=name("missing"))
    assert e.value.response["ResponseMetadata"]["RequestId"]
    assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]


def test_a_body_past_the_http_limit_gets_an_sqs_error(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x" * (5 * 1024 * 1024))
    err = e.value.response["Error"]
    assert err["Code"] == "InvalidParameterValue", err
    assert "longer than" in err["Message"]
    with pytest.raises(ClientError) as e:
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "big", "MessageBody": "x" * (5 * 1024 * 1024)}])
    assert e.value.response["Error"]["Code"] in ("AWS.SimpleQueueService.BatchRequestTooLong", "BatchRequestTooLong")


def test_add_permission_shares_only_what_aws_lets_be_shared(sqs):
    import json

    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    for action in ("RemovePermission", "AddPermission", "SetQueueAttributes", "NoSuchAction"):
        with pytest.raises(ClientError) as e:
            sqs.add_permission(QueueUrl=url, Label="x", AWSAccountIds=["111122223333"], Actions=[action])
        err = e.value.response["Error"]
        assert err["Code"] == "InvalidParameterValue"
        assert err["Message"] == (
            f"Value SQS:{action} for parameter ActionName is invalid. "
            "Reason: Only the queue owner is allowed to invoke this action."
        )
    sqs.add_permission(QueueUrl=url, Label="one", AWSAccountIds=["111122223333"], Actions=["ReceiveMessage"])
    sqs.add_permission(
        QueueUrl=url,
        Label="two",
        AWSAccountIds=["111122223333", "444455556666"],
        Actions=["SendMessage", "DeleteMessage"],
    )
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"])
    assert policy["Version"] == "2008-10-17"
    one, two = policy["Statement"]
    assert one["Principal"] == {"AWS": "arn:aws:iam::111122223333:root"}
    assert one["Action"] == "SQS:ReceiveMessage"
    assert two["Principal"]["AWS"] == ["arn:aws:iam::111122223333:root", "arn:aws:iam::444455556666:root"]
    assert two["Action"] == ["SQS:SendMessage", "SQS:DeleteMessage"]


def test_aws_wording_of_common_parameter_errors(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    err = batch_error(lambda: sqs.send_message(QueueUrl=url, MessageBody="x", DelaySeconds=901))
    assert err["Code"] == "InvalidParameterValue"
    assert err["Message"] == "Value 901 for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= 900."
    err = batch_error(lambda: sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=11))
    assert err["Message"] == "Value 11 for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."
    err = batch_error(
        lambda: sqs.send_message(
            QueueUrl=url,
            MessageBody="x",
            MessageAttributes={"a": {"DataType": "Blob", "StringValue": "v"}},
        )
    )
    assert err["Code"] == "InvalidParameterValue"
    assert err["Message"] == (
        "The message attribute 'a' has an invalid message attribute type, "
        "the set of supported type prefixes is Binary, Number, and String."
    )
    for keys in ([], ["k" * 129]):
        err = batch_error(lambda: sqs.untag_queue(QueueUrl=url, TagKeys=keys))
        assert err["Code"] == "InvalidParameterValue"
        assert err["Message"] == "Tag keys must be between 1 and 128 characters in length."
