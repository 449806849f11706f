"""pika and a queue sealed at rest with its own key (the x-encryption-key
argument): an unknown key is PRECONDITION_FAILED; a persistent message is
nowhere in the data directory in the clear and comes back after a restart."""

import os

import pika
import pytest
from ferryproc import ferry, found_in

SECRET = b"iban DE89 3704 0044 0532 0130 00"


def connect(addrs):
    host, port = addrs["amqp"].rsplit(":", 1)
    return pika.BlockingConnection(pika.ConnectionParameters(host=host, port=int(port)))


def test_a_queue_sealed_with_its_own_key(tmp_path):
    key = tmp_path / "ledger.key"
    key.write_text(os.urandom(32).hex())
    data = str(tmp_path / "data")
    flags = ("--encryption-queue-key", f"ledger={key}")
    with ferry(*flags, listen=("amqp",), data=data) as addrs:
        conn = connect(addrs)
        ch = conn.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
            ch.queue_declare("typo", durable=True, arguments={"x-encryption-key": "ledgr"})
        assert e.value.reply_code == 406 and "ledgr" in e.value.reply_text
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("ledger", durable=True, arguments={"x-encryption-key": "ledger"})
        ch.basic_publish("", "ledger", SECRET, pika.BasicProperties(delivery_mode=2))
        # Redeclared without the argument: not the same queue settings.
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
            ch.queue_declare("ledger", durable=True)
        assert e.value.reply_code == 406
        conn.close()

    assert not found_in(data, SECRET)

    with ferry(*flags, listen=("amqp",), data=data) as addrs:
        conn = connect(addrs)
        ch = conn.channel()
        _, _, body = ch.basic_get("ledger", auto_ack=True)
        assert body == SECRET
        conn.close()
