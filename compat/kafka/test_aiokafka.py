"""aiokafka (asyncio) against ferry: produce with acks=all, a consumer group
that commits, resume after a restart."""

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def create(addr, topic, partitions):
    a = AIOKafkaAdminClient(bootstrap_servers=addr)
    await a.start()
    try:
        await a.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await a.close()


async def produce(addr, topic, values):
    p = AIOKafkaProducer(bootstrap_servers=addr, acks="all", enable_idempotence=True)
    await p.start()
    try:
        metas = []
        for i, v in enumerate(values):
            metas.append(await p.send_and_wait(topic, v, key=b"k%d" % (i % 3), headers=[("n", b"%d" % i)]))
        return metas
    finally:
        await p.stop()


async def consume(addr, topic, group, want, idle=None):
    """Reads `want` records in group `group` and commits; with `idle`, reads
    until nothing comes for that long instead."""
    c = AIOKafkaConsumer(topic, bootstrap_servers=addr, group_id=group,
                         auto_offset_reset="earliest", enable_auto_commit=False)
    await c.start()
    got = []
    try:
        while want is None or len(got) < want:
            batch = await c.getmany(timeout_ms=(idle or 15) * 1000)
            if not batch:
                break
            for records in batch.values():
                got.extend(records)
        await c.commit()
        committed = [await c.committed(TopicPartition(topic, p)) for p in sorted(c.partitions_for_topic(topic))]
    finally:
        await c.stop()
    return got, committed


def test_produce_group_commit_restart(broker, name):
    values = [b"v%d" % i for i in range(30)]

    async def first():
        await create(broker.addr, name, 3)
        metas = await produce(broker.addr, name, values)
        assert len({m.partition for m in metas}) >= 2
        got, committed = await consume(broker.addr, name, name, 30)
        assert sorted(r.value for r in got) == sorted(values)
        assert all(r.headers == (("n", r.value[1:]),) for r in got)
        assert sum(committed) == 30

    asyncio.run(first())
    broker.restart()
    more = [b"after%d" % i for i in range(6)]

    async def second():
        await produce(broker.addr, name, more)
        got, committed = await consume(broker.addr, name, name, None, idle=3)
        assert sorted(r.value for r in got) == sorted(more)
        assert sum(committed) == 36

    asyncio.run(second())
