"""SASL SCRAM-SHA-256/512 and PLAIN with kafka-python, confluent-kafka and
aiokafka against ferry's users; wrong passwords are refused."""

import asyncio
import os
import tempfile

import pytest
from ferryproc import ferry

USERS = """
[[users]]
name = "app"
password = "s3cret pass"

[[permissions]]
user = "app"
vhost = "/"
configure = ".*"
write = ".*"
read = ".*"
"""


@pytest.fixture(scope="module")
def addr():
    d = tempfile.mkdtemp(prefix="ferry-sasl-")
    path = os.path.join(d, "ferry.toml")
    with open(path, "w") as f:
        f.write(USERS)
    with ferry("--config", path, "--kafka-anonymous-user", "", "--kafka-group-initial-rebalance-delay-ms", "0",
               listen=("kafka",)) as addrs:
        yield addrs["kafka"]


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_kafka_python(addr, name, mechanism):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import KafkaError

    auth = dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism,
                sasl_plain_username="app", sasl_plain_password="s3cret pass")
    p = KafkaProducer(bootstrap_servers=addr, acks="all", **auth)
    p.send(name, b"hello").get(timeout=10)
    p.close()
    c = KafkaConsumer(name, bootstrap_servers=addr, group_id=name, auto_offset_reset="earliest",
                      consumer_timeout_ms=10000, **auth)
    assert next(iter(c)).value == b"hello"
    c.close()

    wrong = dict(auth, sasl_plain_password="wrong")
    with pytest.raises(KafkaError):
        KafkaProducer(bootstrap_servers=addr, max_block_ms=3000, request_timeout_ms=3000, bootstrap_timeout_ms=3000, **wrong).send(name, b"x").get(timeout=5)



@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_confluent(addr, name, mechanism):
    from confluent_kafka import Consumer, Producer

    auth = {"bootstrap.servers": addr, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": mechanism,
            "sasl.username": "app", "sasl.password": "s3cret pass"}
    errors = []
    p = Producer({**auth, "acks": "all"})
    p.produce(name, b"scram", on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(15) == 0 and errors == [None]
    c = Consumer({**auth, "group.id": name, "auto.offset.reset": "earliest"})
    c.subscribe([name])
    got = None
    for _ in range(40):
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got = m.value()
            break
    c.close()
    assert got == b"scram"

    # A wrong password: librdkafka reports the broker's authentication error.
    failures = []
    p = Producer({**auth, "sasl.password": "wrong", "message.timeout.ms": 3000,
                  "error_cb": lambda e: failures.append(e)})
    p.produce(name, b"x", on_delivery=lambda err, msg: errors.append(err))
    p.flush(8)
    assert errors[-1] is not None
    assert any("uthentication" in e.str() for e in failures), failures


def test_aiokafka_scram(addr, name):
    from aiokafka import AIOKafkaProducer

    async def go():
        p = AIOKafkaProducer(bootstrap_servers=addr, security_protocol="SASL_PLAINTEXT",
                             sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="app",
                             sasl_plain_password="s3cret pass", acks="all")
        await p.start()
        try:
            md = await p.send_and_wait(name, b"async")
            assert md.offset == 0
        finally:
            await p.stop()

    asyncio.run(go())
