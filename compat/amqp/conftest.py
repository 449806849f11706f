"""A ferry with its AMQP listener."""

import uuid

import pika
import pytest
from ferryproc import ferry


@pytest.fixture(scope="session")
def amqp_addr():
    with ferry(listen=("amqp",)) as addrs:
        host, port = addrs["amqp"].rsplit(":", 1)
        yield host, int(port)


@pytest.fixture()
def amqp_url(amqp_addr):
    host, port = amqp_addr
    return f"amqp://guest:guest@{host}:{port}/%2f"


@pytest.fixture()
def name():
    """A queue or exchange name no other test uses."""
    return "t-" + uuid.uuid4().hex[:12]


@pytest.fixture()
def conn(amqp_addr):
    """A pika blocking connection, closed after the test."""
    c = pika.BlockingConnection(pika.ConnectionParameters(*amqp_addr))
    yield c
    if c.is_open:
        c.close()
