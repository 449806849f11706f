"""RabbitMQ behaviours that clients' edge cases depend on (issue 22), with pika."""

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker


def test_unbinding_what_is_gone_succeeds(conn, name):
    ch = conn.channel()
    ch.exchange_declare(name + "-x", "direct", auto_delete=False)
    ch.queue_declare(name + "-q")
    ch.queue_bind(name + "-q", name + "-x", "k")
    # The binding, then the queue, then the exchange go; each unbind after
    # is answered unbind-ok, as teardown code expects.
    ch.queue_unbind(name + "-q", name + "-x", "k")
    ch.queue_unbind(name + "-q", name + "-x", "k")
    ch.queue_delete(name + "-q")
    ch.queue_unbind(name + "-q", name + "-x", "k")
    ch.exchange_delete(name + "-x")
    ch.queue_declare(name + "-q2")
    ch.queue_unbind(name + "-q2", name + "-x", "k")
    ch.exchange_declare(name + "-src", "fanout")
    ch.exchange_unbind(name + "-gone", name + "-src", "k")
    ch.exchange_unbind(name + "-src", name + "-gone", "k")
    assert ch.is_open


def test_if_empty_counts_only_waiting_messages(conn, name):
    ch = conn.channel()
    ch.queue_declare(name)
    ch.basic_publish("", name, b"held")
    method, _, _ = ch.basic_get(name, auto_ack=False)
    assert method is not None
    # Only an unacked delivery: the queue is empty as RabbitMQ counts.
    other = conn.channel()
    other.queue_delete(name, if_empty=True)
    with pytest.raises(ChannelClosedByBroker) as e:
        other.queue_declare(name, passive=True)
    assert e.value.reply_code == 404

    ch.queue_declare(name + "-full")
    ch.basic_publish("", name + "-full", b"waiting")
    third = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as e:
        third.queue_delete(name + "-full", if_empty=True)
    assert e.value.reply_code == 406


def test_an_unknown_exchange_type_fails_only_the_channel(conn, name):
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.exchange_declare(name, "x-no-such-type")
    assert e.value.reply_code == 406
    assert "unknown exchange type 'x-no-such-type'" in e.value.reply_text
    # The connection lives on.
    conn.channel().queue_declare(name + "-q")


def test_auto_delete_exchanges_go_down_the_chain(conn, name):
    ch = conn.channel()
    top, middle = name + "-top", name + "-middle"
    ch.exchange_declare(top, "fanout", auto_delete=True)
    ch.exchange_declare(middle, "fanout", auto_delete=True)
    # middle's only binding is to top; top's only binding is to the queue.
    ch.exchange_bind(top, middle)
    ch.queue_declare(name)
    ch.queue_bind(name, top)
    # The queue goes: top loses its last binding and goes, and with it
    # middle's only binding, so middle goes too.
    ch.queue_delete(name)
    for gone in (top, middle):
        probe = conn.channel()
        with pytest.raises(ChannelClosedByBroker) as e:
            probe.exchange_declare(gone, "fanout", passive=True)
        assert e.value.reply_code == 404, gone


def test_a_dead_letter_of_a_per_message_ttl_keeps_its_original_expiration(conn, name):
    ch = conn.channel()
    dead = name + "-dead"
    ch.queue_declare(dead)
    ch.queue_declare(
        name,
        arguments={
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead,
        },
    )
    ch.basic_publish("", name, b"short-lived", pika.BasicProperties(expiration="50"))
    got = None
    for _ in range(250):
        method, props, body = ch.basic_get(dead, auto_ack=True)
        if method is not None:
            got = (props, body)
            break
        conn.sleep(0.02)
    assert got is not None, "the expired message never reached the dead-letter queue"
    props, body = got
    assert body == b"short-lived"
    assert props.expiration is None, "dead-lettering removes the expiration"
    death = props.headers["x-death"][0]
    assert death["reason"] == "expired"
    assert death["original-expiration"] == "50"
