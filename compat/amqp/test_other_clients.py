"""aio-pika (asyncio) and kombu (Celery's transport) against ferry."""

import asyncio

import aio_pika
import kombu


def test_aio_pika_publish_consume_and_rpc(amqp_url, name):
    async def scenario():
        conn = await aio_pika.connect_robust(amqp_url)
        async with conn:
            ch = await conn.channel(publisher_confirms=True)
            await ch.set_qos(prefetch_count=5)
            q = await ch.declare_queue(name, durable=True)
            for i in range(20):
                await ch.default_exchange.publish(
                    aio_pika.Message(str(i).encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=name,
                )
            got = []
            async with q.iterator() as it:
                async for message in it:
                    async with message.process():
                        got.append(int(message.body))
                    if len(got) == 20:
                        break
            assert got == list(range(20))

            topic = await ch.declare_exchange(f"{name}-x", aio_pika.ExchangeType.TOPIC)
            bound = await ch.declare_queue(exclusive=True)
            await bound.bind(topic, "a.#")
            await topic.publish(aio_pika.Message(b"hit"), routing_key="a.b.c")
            await topic.publish(aio_pika.Message(b"miss"), routing_key="b.a")
            incoming = await bound.get(timeout=5)
            await incoming.ack()
            assert incoming.body == b"hit"
            assert await bound.get(fail=False) is None

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_kombu_simple_queue_and_producer(amqp_url, name):
    with kombu.Connection(amqp_url) as conn:
        q = conn.SimpleQueue(name)
        q.put({"hello": "world"})
        msg = q.get(timeout=5)
        msg.ack()
        assert msg.payload == {"hello": "world"}
        q.close()

        exchange = kombu.Exchange(f"{name}-tasks", type="direct", durable=True)
        queue = kombu.Queue(f"{name}-work", exchange, routing_key="work", durable=True)
        with conn.Producer() as producer:
            producer.publish({"n": 1}, exchange=exchange, routing_key="work", declare=[queue], serializer="json")
        got = []
        with conn.Consumer(queue, callbacks=[lambda body, m: (got.append(body), m.ack())]):
            conn.drain_events(timeout=5)
        assert got == [{"n": 1}]
