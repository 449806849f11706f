"""Compressed Kafka batches across faces: each codec as confluent-kafka
(librdkafka) and kafka-python (snappy in the Java client's xerial framing)
write it, read back by a Kafka consumer as stored and by pika from the
same topic declared as a RabbitMQ stream queue, inflated."""

import json
import pathlib
import struct
import time

import pika
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from ferryproc import ferry
from kafka import KafkaProducer

# Records that compress well, so every codec really packs them, and enough
# of them that one batch holds several.
RECORDS = [(f"k{i}".encode(), (f"record {i} " * 40).encode()) for i in range(200)]


# Kafka's codec numbers, in a batch's attributes bits 0-2.
CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tmp_path_factory.mktemp("ferry-compression")


@pytest.fixture(scope="module")
def addrs(data):
    with ferry(listen=("kafka", "amqp"), data=str(data)) as a:
        yield a


def stored_codec(data, topic):
    """The codec of the first batch stored for `topic` (so the test knows
    the client really compressed): after the segment's 40-byte header, the
    batch's attributes are at byte 21."""
    for meta in pathlib.Path(data, "streams").glob("*/stream.json"):
        if json.loads(meta.read_text())["name"] == topic:
            seg = (meta.parent / "0" / "00000000000000000000.log").read_bytes()
            (attributes,) = struct.unpack_from(">h", seg, 40 + 21)
            return attributes & 7
    raise AssertionError(f"no stream {topic} on disk")


def confluent(addr, topic, codec):
    p = Producer({
        "bootstrap.servers": addr,
        "acks": "all",
        "compression.type": codec,
        "linger.ms": 50,
        "batch.num.messages": 1000,
    })
    errors = []
    for key, value in RECORDS:
        p.produce(topic, key=key, value=value, headers=[("codec", codec)],
                  on_delivery=lambda err, _m: err and errors.append(err))
    assert p.flush(30) == 0
    assert errors == []


def kafka_python(addr, topic, codec):
    p = KafkaProducer(bootstrap_servers=addr, acks="all", compression_type=codec, linger_ms=50)
    for key, value in RECORDS:
        p.send(topic, key=key, value=value, headers=[("codec", codec.encode())])
    p.flush(30)
    p.close()


def read_kafka(addr, topic):
    c = Consumer({"bootstrap.servers": addr, "group.id": topic, "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got, deadline = [], time.monotonic() + 30
    while len(got) < len(RECORDS) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append((m.key(), m.value()))
    c.close()
    return got


def read_amqp(addr, topic):
    host, port = addr.rsplit(":", 1)
    conn = pika.BlockingConnection(pika.ConnectionParameters(host, int(port)))
    try:
        ch = conn.channel()
        ch.queue_declare(topic, durable=True, arguments={"x-queue-type": "stream"})
        ch.basic_qos(prefetch_count=50)
        got, deadline = [], time.monotonic() + 30
        args = {"x-stream-offset": "first"}
        for method, props, body in ch.consume(topic, arguments=args, inactivity_timeout=0.2):
            assert ch.is_open, "the stream consumer was cancelled"
            if method is not None:
                got.append((props.headers["x-stream-offset"], method.routing_key, body, props.headers))
                ch.basic_ack(method.delivery_tag)
            if len(got) >= len(RECORDS) or time.monotonic() > deadline:
                break
        ch.cancel()
        return got
    finally:
        conn.close()


@pytest.mark.parametrize(
    "client,codec",
    [
        (confluent, "gzip"),
        (confluent, "snappy"),
        (confluent, "lz4"),
        (confluent, "zstd"),
        (kafka_python, "gzip"),
        (kafka_python, "snappy"),
    ],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_a_compressed_topic_reads_over_kafka_and_amqp(data, addrs, client, codec):
    topic = f"z-{client.__name__}-{codec}".replace("_", "-")
    client(addrs["kafka"], topic, codec)
    assert stored_codec(data, topic) == CODECS[codec]

    assert read_kafka(addrs["kafka"], topic) == RECORDS

    got = read_amqp(addrs["amqp"], topic)
    assert [o for o, *_ in got] == list(range(len(RECORDS)))
    assert [(k.encode(), b) for _, k, b, _ in got] == RECORDS
    assert all(h["codec"] == codec for *_, h in got)
