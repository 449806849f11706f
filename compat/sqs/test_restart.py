"""State that must survive a restart of ferry, seen through boto3."""

import tempfile

from ferryproc import ferry, sqs_client


def test_fifo_sequence_numbers_keep_growing_across_a_restart():
    data = tempfile.mkdtemp(prefix="ferry-restart-")
    with ferry(data=data) as addrs:
        sqs = sqs_client(addrs)
        url = sqs.create_queue(
            QueueName="seq.fifo",
            Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
        )["QueueUrl"]
        before = sqs.send_message(QueueUrl=url, MessageBody="a", MessageGroupId="g")["SequenceNumber"]
        got = sqs.receive_message(QueueUrl=url, AttributeNames=["All"])["Messages"][0]
        assert got["Attributes"]["SequenceNumber"] == before
        sqs.delete_message(QueueUrl=url, ReceiptHandle=got["ReceiptHandle"])
    # The queue restarts empty: its own counter starts over, the sequence
    # numbers SQS clients see must not.
    with ferry(data=data) as addrs:
        sqs = sqs_client(addrs)
        url = sqs.get_queue_url(QueueName="seq.fifo")["QueueUrl"]
        after = sqs.send_message(QueueUrl=url, MessageBody="b", MessageGroupId="g")["SequenceNumber"]
        assert int(after) > int(before), (before, after)


def test_a_fifo_duplicate_is_refused_after_a_restart_within_its_window():
    data = tempfile.mkdtemp(prefix="ferry-restart-")
    with ferry(data=data) as addrs:
        sqs = sqs_client(addrs)
        url = sqs.create_queue(QueueName="pay.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        first = sqs.send_message(
            QueueUrl=url, MessageBody="pay 1", MessageGroupId="g", MessageDeduplicationId="order-1"
        )
        got = sqs.receive_message(QueueUrl=url)["Messages"][0]
        sqs.delete_message(QueueUrl=url, ReceiptHandle=got["ReceiptHandle"])
    # A producer retrying after the broker restarted: still a duplicate.
    with ferry(data=data) as addrs:
        sqs = sqs_client(addrs)
        url = sqs.get_queue_url(QueueName="pay.fifo")["QueueUrl"]
        retry = sqs.send_message(
            QueueUrl=url, MessageBody="pay 1", MessageGroupId="g", MessageDeduplicationId="order-1"
        )
        assert retry["MessageId"] == first["MessageId"]
        assert retry["SequenceNumber"] == first["SequenceNumber"]
        assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
