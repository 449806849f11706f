"""RabbitMQ stream queues through pika: declare, publish, replay from an
offset with manual acks as credit, and RabbitMQ's refusals."""

import datetime
import time

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

STREAM = {"x-queue-type": "stream"}


def declare(ch, name, **args):
    ch.queue_declare(name, durable=True, arguments={**STREAM, **args})


def publish(ch, name, bodies, exchange=""):
    ch.confirm_delivery()
    for i, b in enumerate(bodies):
        ch.basic_publish(
            exchange,
            name,
            b,
            pika.BasicProperties(
                delivery_mode=2,
                content_type="text/plain",
                message_id=f"id-{i}",
                headers={"i": i, "tag": "x"},
            ),
        )


def read(conn, name, offset, want, prefetch=2, timeout=10):
    """`want` deliveries from `offset`, each acked as it comes (a prefetch
    smaller than `want` only works if acks give credit back)."""
    ch = conn.channel()
    ch.basic_qos(prefetch_count=prefetch)
    got = []
    deadline = time.monotonic() + timeout
    args = {} if offset is None else {"x-stream-offset": offset}
    for method, props, body in ch.consume(name, arguments=args, inactivity_timeout=0.2):
        if method is not None:
            got.append((props.headers["x-stream-offset"], body, props))
            ch.basic_ack(method.delivery_tag)
        if len(got) >= want or time.monotonic() > deadline:
            break
    ch.cancel()
    ch.close()
    return got


def test_a_stream_replays_from_first_an_offset_a_time_and_an_interval(conn, name):
    ch = conn.channel()
    declare(ch, name, **{"x-max-age": "7D", "x-stream-max-segment-size-bytes": 1_000_000})
    publish(ch, name, [f"m{i}".encode() for i in range(8)])

    got = read(conn, name, "first", 8)
    assert [(o, b) for o, b, _ in got] == [(i, f"m{i}".encode()) for i in range(8)]
    props = got[3][2]
    assert props.content_type == "text/plain"
    assert props.message_id == "id-3"
    assert props.headers["i"] == 3 and props.headers["tag"] == "x"
    assert props.delivery_mode == 2

    # Reading consumed nothing; other readers start where they ask.
    assert [o for o, _, _ in read(conn, name, 5, 3)] == [5, 6, 7]
    assert [o for o, _, _ in read(conn, name, "last", 1)] == [7]
    epoch = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    assert len(read(conn, name, epoch, 8)) == 8
    assert [o for o, _, _ in read(conn, name, "10m", 8)][0] == 0
    # "next" (also the default) waits for what comes after it.
    assert read(conn, name, None, 1, timeout=1) == []

    declared = ch.queue_declare(name, passive=True)
    assert declared.method.message_count == 8


def test_an_exchange_feeds_a_stream_beside_a_queue(conn, name):
    ch = conn.channel()
    declare(ch, name)
    work = name + "-work"
    ch.queue_declare(work, durable=True)
    ch.exchange_declare(name + "-x", "fanout", durable=True)
    ch.queue_bind(name, name + "-x")
    ch.queue_bind(work, name + "-x")
    publish(ch, "ignored", [b"one", b"two"], exchange=name + "-x")
    assert [b for _, b, _ in read(conn, name, "first", 2)] == [b"one", b"two"]
    method, _, body = ch.basic_get(work, auto_ack=True)
    assert body == b"one"
    ch.queue_delete(work)
    ch.queue_delete(name)


@pytest.mark.parametrize(
    "what,code",
    [
        ("non-durable", 406),
        ("x-max-length", 406),
        ("get", 540),
        ("no-prefetch", 406),
        ("auto-ack", 540),
        ("purge", 540),
    ],
)
def test_what_a_stream_queue_refuses(conn, name, what, code):
    setup = conn.channel()
    declare(setup, name)
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as e:
        if what == "non-durable":
            ch.queue_declare(name + "-t", durable=False, arguments=STREAM)
        elif what == "x-max-length":
            ch.queue_declare(name + "-t", durable=True, arguments={**STREAM, "x-max-length": 5})
        elif what == "get":
            ch.basic_get(name)
        elif what == "no-prefetch":
            ch.basic_consume(name, lambda *a: None)
        elif what == "auto-ack":
            ch.basic_qos(prefetch_count=5)
            ch.basic_consume(name, lambda *a: None, auto_ack=True)
        elif what == "purge":
            ch.queue_purge(name)
    assert e.value.reply_code == code, e.value
    # The connection serves on.
    setup.queue_delete(name)
