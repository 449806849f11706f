"""A ferry with its Kafka listener that a test can restart on the same data."""

import contextlib
import tempfile
import uuid

import pytest
from ferryproc import ferry

# A group's first rebalance waits this long for more members (Kafka's
# group.initial.rebalance.delay.ms); the tests start one consumer at a time.
FLAGS = ("--kafka-group-initial-rebalance-delay-ms", "0")


class Broker:
    """A ferry on its own data directory; `restart()` stops it (SIGTERM,
    checked clean) and starts it again on the same data, on a new port."""

    def __init__(self):
        self.data = tempfile.mkdtemp(prefix="ferry-kafka-")
        self._stack = contextlib.ExitStack()
        self.addr = None
        self._start()

    def _start(self):
        addrs = self._stack.enter_context(ferry(*FLAGS, listen=("kafka",), data=self.data))
        self.addr = addrs["kafka"]

    def restart(self):
        self._stack.close()
        self._stack = contextlib.ExitStack()
        self._start()

    def close(self):
        self._stack.close()


@pytest.fixture()
def broker():
    b = Broker()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture()
def name():
    """A topic or group name no other test uses."""
    return "t-" + uuid.uuid4().hex[:12]
