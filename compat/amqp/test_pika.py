"""pika (RabbitMQ's blocking Python client) against ferry's AMQP listener."""

import time

import pika
import pytest
from pika.exceptions import (
    ChannelClosedByBroker,
    ProbableAccessDeniedError,
    ProbableAuthenticationError,
    UnroutableError,
)


@pytest.fixture()
def ch(conn):
    return conn.channel()


def persistent(**kw):
    return pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent, **kw)


def drain(ch, queue, limit=100):
    out = []
    for _ in range(limit):
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            break
        out.append((method, props, body))
    return out


def wait_for(ch, queue, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is not None:
            return method, props, body
        ch.connection.sleep(0.02)
    raise AssertionError(f"nothing arrived on {queue} in {timeout}s")


def test_publish_with_confirms_and_consume(ch, name):
    ch.queue_declare(name, durable=True)
    ch.confirm_delivery()
    for i in range(50):
        ch.basic_publish("", name, f"m{i}".encode(), persistent(headers={"i": i}, content_type="text/plain"))
    got = []

    def on_message(c, method, props, body):
        got.append((body, props.headers["i"], props.content_type, method.redelivered))
        c.basic_ack(method.delivery_tag)
        if len(got) == 50:
            c.stop_consuming()

    ch.basic_qos(prefetch_count=10)
    ch.basic_consume(name, on_message)
    ch.start_consuming()
    assert got == [(f"m{i}".encode(), i, "text/plain", False) for i in range(50)]
    assert ch.queue_declare(name, passive=True).method.message_count == 0


def test_server_named_queues(ch):
    q = ch.queue_declare("", exclusive=True).method.queue
    assert q.startswith("amq.gen-")
    ch.basic_publish("", q, b"x")
    assert ch.queue_declare(q, passive=True).method.message_count == 1


def test_basic_get_counts_and_get_empty(ch, name):
    ch.queue_declare(name)
    for i in range(3):
        ch.basic_publish("", name, b"x")
    method, _, _ = ch.basic_get(name)
    assert method.message_count == 2
    ch.basic_ack(method.delivery_tag)
    assert len(drain(ch, name)) == 2
    assert ch.basic_get(name) == (None, None, None)


def test_exchange_kinds_and_alternate_exchange(ch, name):
    topic, fanout, headers, alt = (f"{name}-{k}" for k in ("topic", "fanout", "headers", "alt"))
    ch.exchange_declare(alt, "fanout")
    ch.exchange_declare(topic, "topic", arguments={"alternate-exchange": alt})
    ch.exchange_declare(fanout, "fanout")
    ch.exchange_declare(headers, "headers")
    queues = {k: f"{name}-{k}" for k in ("stars", "unrouted", "f1", "f2", "any")}
    for q in queues.values():
        ch.queue_declare(q)
    ch.queue_bind(queues["stars"], topic, "stock.*.nyse")
    ch.queue_bind(queues["unrouted"], alt)
    ch.queue_bind(queues["f1"], fanout)
    ch.queue_bind(queues["f2"], fanout)
    ch.exchange_bind(fanout, topic, "stock.#")
    ch.queue_bind(queues["any"], headers, arguments={"x-match": "any", "a": "1", "b": "2"})

    ch.basic_publish(topic, "stock.ibm.nyse", b"ibm")
    ch.basic_publish(topic, "weather.today", b"rain")
    ch.basic_publish(headers, "", b"h", pika.BasicProperties(headers={"b": "2"}))
    ch.basic_publish(headers, "", b"no", pika.BasicProperties(headers={"c": "3"}))

    def bodies(q):
        return [b for _, _, b in drain(ch, q)]

    assert bodies(queues["stars"]) == [b"ibm"]
    assert bodies(queues["unrouted"]) == [b"rain"]
    assert bodies(queues["f1"]) == [b"ibm"]
    assert bodies(queues["f2"]) == [b"ibm"]
    assert bodies(queues["any"]) == [b"h"]


def test_dead_lettering_by_reject_ttl_and_max_length(ch, name):
    dlx, dead = f"{name}-dlx", f"{name}-dead"
    ch.exchange_declare(dlx, "direct")
    ch.queue_declare(dead)
    ch.queue_bind(dead, dlx, "gone")
    common = {"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": "gone"}

    rejected = f"{name}-rej"
    ch.queue_declare(rejected, arguments=common)
    ch.basic_publish("", rejected, b"r")
    method, _, _ = ch.basic_get(rejected)
    ch.basic_reject(method.delivery_tag, requeue=False)
    _, props, body = wait_for(ch, dead)
    death = props.headers["x-death"][0]
    assert body == b"r"
    assert (death["reason"], death["queue"], death["count"]) == ("rejected", rejected, 1)
    assert death["exchange"] == ""
    assert death["routing-keys"] == [rejected]
    assert props.headers["x-first-death-reason"] == "rejected"

    expiring = f"{name}-ttl"
    ch.queue_declare(expiring, arguments={**common, "x-message-ttl": 50})
    ch.basic_publish("", expiring, b"t")
    _, props, body = wait_for(ch, dead)
    assert (body, props.headers["x-death"][0]["reason"]) == (b"t", "expired")

    capped = f"{name}-cap"
    ch.queue_declare(capped, arguments={**common, "x-max-length": 1})
    ch.basic_publish("", capped, b"first")
    ch.basic_publish("", capped, b"second")
    _, props, body = wait_for(ch, dead)
    assert (body, props.headers["x-death"][0]["reason"]) == (b"first", "maxlen")
    assert [b for _, _, b in drain(ch, capped)] == [b"second"]


def test_per_message_ttl_and_priorities(ch, name):
    ch.queue_declare(name, arguments={"x-max-priority": 10})
    ch.basic_publish("", name, b"expires", pika.BasicProperties(expiration="20"))
    for p in (1, 7, 4):
        ch.basic_publish("", name, str(p).encode(), pika.BasicProperties(priority=p))
    time.sleep(0.1)
    assert [b for _, _, b in drain(ch, name)] == [b"7", b"4", b"1"]


def test_nack_multiple_requeues_and_marks_redelivered(ch, name):
    ch.queue_declare(name)
    for i in range(3):
        ch.basic_publish("", name, str(i).encode())
    tags = [ch.basic_get(name)[0].delivery_tag for _ in range(3)]
    ch.basic_nack(tags[-1], multiple=True, requeue=True)
    again = drain(ch, name)
    assert [b for _, _, b in again] == [b"0", b"1", b"2"]
    assert all(m.redelivered for m, _, _ in again)


def test_channel_errors_carry_rabbitmq_codes(conn, name):
    cases = [
        (lambda c: c.queue_declare(f"{name}-missing", passive=True), 404),
        (lambda c: c.exchange_declare("amq.custom", "direct"), 403),
        (lambda c: c.basic_ack(42) or c.queue_declare(f"{name}-y"), 406),
        (lambda c: c.queue_bind(f"{name}-missing", "amq.direct"), 404),
        (lambda c: c.basic_publish(f"{name}-no-exchange", "k", b"x") or c.queue_declare(f"{name}-x"), 404),
    ]
    for i, (call, code) in enumerate(cases):
        c = conn.channel()
        with pytest.raises(ChannelClosedByBroker) as e:
            call(c)
        assert e.value.reply_code == code, (i, e.value)
    c = conn.channel()
    c.queue_declare(name, durable=False)
    with pytest.raises(ChannelClosedByBroker) as e:
        c.queue_declare(name, durable=True)
    assert e.value.reply_code == 406
    assert "inequivalent" in e.value.reply_text
    c = conn.channel()
    c.basic_publish("", name, b"x")
    with pytest.raises(ChannelClosedByBroker) as e:
        c.queue_delete(name, if_empty=True)
    assert e.value.reply_code == 406
    # The connection outlives its channels' errors.
    assert conn.channel().queue_declare(name, passive=True).method.message_count == 1


def test_exclusive_queue_is_locked_to_its_connection(amqp_addr, ch, name):
    ch.queue_declare(name, exclusive=True)
    other = pika.BlockingConnection(pika.ConnectionParameters(*amqp_addr))
    try:
        with pytest.raises(ChannelClosedByBroker) as e:
            other.channel().basic_consume(name, lambda *a: None)
        assert e.value.reply_code == 405
    finally:
        other.close()


def test_mandatory_publish_to_nowhere_is_returned(ch, name):
    ch.confirm_delivery()
    with pytest.raises(UnroutableError):
        ch.basic_publish("", f"{name}-nobody", b"x", mandatory=True)


def test_transactions(ch, name):
    ch.queue_declare(name)
    ch.tx_select()
    ch.basic_publish("", name, b"dropped")
    ch.tx_rollback()
    ch.basic_publish("", name, b"kept")
    ch.tx_commit()
    assert [b for _, _, b in drain(ch, name)] == [b"kept"]


def test_direct_reply_to(conn, name):
    server, client = conn.channel(), conn.channel()
    server.queue_declare(name)
    answers = []

    def on_reply(c, method, props, body):
        answers.append((props.correlation_id, body))

    client.basic_consume("amq.rabbitmq.reply-to", on_reply, auto_ack=True)
    client.basic_publish("", name, b"ping", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id="42"))
    method, props, body = wait_for(server, name)
    assert props.reply_to.startswith("amq.rabbitmq.reply-to.")
    server.basic_publish("", props.reply_to, b"pong", pika.BasicProperties(correlation_id=props.correlation_id))
    deadline = time.monotonic() + 5
    while not answers and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    assert answers == [("42", b"pong")]


def test_consumer_is_cancelled_when_its_queue_is_deleted(conn, name):
    ch = conn.channel()
    ch.queue_declare(name)
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = ch.basic_consume(name, lambda *a: None)
    conn.channel().queue_delete(name)
    deadline = time.monotonic() + 5
    while not cancelled and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    assert cancelled == [tag]


def test_single_active_consumer_gets_everything(conn, name):
    ch = conn.channel()
    ch.queue_declare(name, arguments={"x-single-active-consumer": True})
    got = {"a": 0, "b": 0}
    ch.basic_consume(name, lambda c, m, p, b: (got.__setitem__("a", got["a"] + 1), c.basic_ack(m.delivery_tag)))
    ch.basic_consume(name, lambda c, m, p, b: (got.__setitem__("b", got["b"] + 1), c.basic_ack(m.delivery_tag)))
    for _ in range(10):
        ch.basic_publish("", name, b"x")
    deadline = time.monotonic() + 5
    while sum(got.values()) < 10 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    assert got == {"a": 10, "b": 0}


def test_quorum_queue_delivery_limit_dead_letters(ch, name):
    dead = f"{name}-dead"
    ch.queue_declare(dead, durable=True)
    ch.queue_declare(
        name,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": 1,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead,
        },
    )
    ch.basic_publish("", name, b"poison", persistent())
    for _ in range(2):
        method, _, _ = wait_for_unacked(ch, name)
        ch.basic_nack(method.delivery_tag, requeue=True)
    _, props, body = wait_for(ch, dead)
    assert body == b"poison"
    assert props.headers["x-death"][0]["reason"] == "delivery_limit"


def wait_for_unacked(ch, queue, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = ch.basic_get(queue)
        if got[0] is not None:
            return got
        ch.connection.sleep(0.02)
    raise AssertionError(f"nothing on {queue}")


def test_large_messages_span_frames(ch, name):
    ch.queue_declare(name)
    body = bytes(range(256)) * 4096  # 1 MiB, many frames of 128 KiB
    ch.basic_publish("", name, body)
    _, _, got = ch.basic_get(name, auto_ack=True)
    assert got == body


def test_heartbeats_keep_an_idle_connection_open(amqp_addr):
    c = pika.BlockingConnection(pika.ConnectionParameters(*amqp_addr, heartbeat=1))
    try:
        c.sleep(3.5)  # pika answers heartbeats while it sleeps
        assert c.is_open
        c.channel().queue_declare("", exclusive=True)
    finally:
        c.close()


def test_bad_credentials_and_unknown_vhost_are_refused(amqp_addr):
    host, port = amqp_addr
    with pytest.raises(ProbableAuthenticationError):
        pika.BlockingConnection(
            pika.ConnectionParameters(host, port, credentials=pika.PlainCredentials("guest", "wrong"))
        )
    with pytest.raises((ProbableAccessDeniedError, pika.exceptions.ConnectionClosedByBroker)):
        pika.BlockingConnection(pika.ConnectionParameters(host, port, virtual_host="nope"))


def test_memory_alarm_blocks_a_publishing_connection():
    from ferryproc import ferry

    # A high watermark of 1 byte: the memory alarm is raised at once.
    with ferry("--memory-high-watermark", "1", listen=("amqp",)) as addrs:
        host, port = addrs["amqp"].rsplit(":", 1)
        conn = pika.BlockingConnection(pika.ConnectionParameters(host, int(port)))
        blocked = []
        conn.add_on_connection_blocked_callback(lambda c, frame: blocked.append(frame.method.reason))
        ch = conn.channel()
        ch.queue_declare("held")
        ch.basic_publish("", "held", b"x")
        deadline = time.monotonic() + 5
        while not blocked and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.05)
        assert blocked and blocked[0].startswith("memory"), blocked
        # As with RabbitMQ, a blocked connection's input is not read (not
        # even its connection.close): leaving the block stops ferry, which
        # closes it from its side.
