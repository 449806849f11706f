"""State that must survive a restart of ferry, seen through boto3."""

import os
import tempfile
import time

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


def _journal_bytes(data, suffix):
    journal = os.path.join(data, "journal")
    total = 0
    for f in os.listdir(journal):
        if f.endswith(suffix):
            try:
                total += os.path.getsize(os.path.join(journal, f))
            except FileNotFoundError:
                pass  # deleted since it was listed: what the test waits for
    return total


def test_a_fifo_burst_leaves_no_journal_behind_its_window_and_still_deduplicates():
    # Small segments, so a short burst spans many of them.
    segment = 64 * 1024
    data = tempfile.mkdtemp(prefix="ferry-restart-")
    body = "b" * 2000
    with ferry("--segment-size", str(segment), data=data) as addrs:
        sqs = sqs_client(addrs)
        url = sqs.create_queue(QueueName="burst.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        first = None
        for batch in range(40):
            entries = [
                {
                    "Id": str(i),
                    "MessageBody": body,
                    "MessageGroupId": f"g{i}",
                    "MessageDeduplicationId": f"order-{batch}-{i}",
                }
                for i in range(10)
            ]
            sent = sqs.send_message_batch(QueueUrl=url, Entries=entries)
            assert len(sent["Successful"]) == 10, sent
            if first is None:
                first = next(e["MessageId"] for e in sent["Successful"] if e["Id"] == "0")
        # All live: every segment is held by its messages.
        assert _journal_bytes(data, ".seg") > 10 * segment
        deleted = 0
        while deleted < 400:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            assert got, f"only {deleted} of 400 came back"
            done = sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
            )
            assert not done.get("Failed"), done
            deleted += len(got)
        # Everything is deleted; only the five-minute windows remain. The
        # journal shrinks to its head within a few compaction rounds, not
        # after the window.
        deadline = time.monotonic() + 20
        while _journal_bytes(data, ".seg") > 2 * segment:
            assert time.monotonic() < deadline, _journal_bytes(data, ".seg")
            time.sleep(0.2)
        # The windows' keys are kept, small: no bodies.
        assert 0 < _journal_bytes(data, ".keys") < 400 * len(body) / 10
    with ferry(data=data) as addrs:
        sqs = sqs_client(addrs)
        url = sqs.get_queue_url(QueueName="burst.fifo")["QueueUrl"]
        retry = sqs.send_message(
            QueueUrl=url, MessageBody=body, MessageGroupId="g0", MessageDeduplicationId="order-0-0"
        )
        assert retry["MessageId"] == first
        assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
