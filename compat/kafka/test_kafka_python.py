"""kafka-python (pure Python) against ferry: admin, produce with acks=all,
a consumer group that commits, resume after a restart."""

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic


def create(broker, topic, partitions):
    a = KafkaAdminClient(bootstrap_servers=broker.addr, request_timeout_ms=10000)
    try:
        a.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        a.close()


def produce(broker, topic, values, **extra):
    p = KafkaProducer(bootstrap_servers=broker.addr, acks="all", linger_ms=5, **extra)
    futures = [p.send(topic, key=b"k%d" % (i % 5), value=v, headers=[("n", b"%d" % i)]) for i, v in enumerate(values)]
    p.flush(30)
    metas = [f.get(timeout=10) for f in futures]
    p.close()
    return metas


def consumer(broker, group, **extra):
    config = {"auto_offset_reset": "earliest", "enable_auto_commit": False, "consumer_timeout_ms": 15000}
    return KafkaConsumer(bootstrap_servers=broker.addr, group_id=group, **{**config, **extra})


def take(c, want):
    got = []
    for m in c:
        got.append(m)
        if len(got) == want:
            break
    return got


def test_produce_group_commit_restart(broker, name):
    create(broker, name, 4)
    values = [b"v%d" % i for i in range(40)]
    metas = produce(broker, name, values)
    # kafka-python's partitioner is murmur2, as Java's: same key, same partition.
    parts = {}
    for i, md in enumerate(metas):
        parts.setdefault(i % 5, set()).add(md.partition)
    assert all(len(p) == 1 for p in parts.values())

    c = consumer(broker, name)
    c.subscribe([name])
    got = take(c, 40)
    assert sorted(m.value for m in got) == sorted(values)
    assert all(m.headers == [("n", m.value[1:])] for m in got)
    c.commit()
    assert sum(c.committed(TopicPartition(name, p)) or 0 for p in range(4)) == 40
    c.close()

    broker.restart()
    more = [b"after%d" % i for i in range(8)]
    produce(broker, name, more)
    c = consumer(broker, name, consumer_timeout_ms=3000)
    c.subscribe([name])
    got = [m.value for m in c]  # until 3 s pass without a record
    assert sorted(got) == sorted(more)
    c.close()


def test_seek_and_offsets_for_times(broker, name):
    create(broker, name, 1)
    produce(broker, name, [b"a", b"b", b"c", b"d"])
    c = KafkaConsumer(bootstrap_servers=broker.addr, consumer_timeout_ms=5000)
    tp = TopicPartition(name, 0)
    c.assign([tp])
    assert c.beginning_offsets([tp]) == {tp: 0}
    assert c.end_offsets([tp]) == {tp: 4}
    c.seek(tp, 2)
    assert [m.value for m in take(c, 2)] == [b"c", b"d"]
    far = c.offsets_for_times({tp: 2**62})
    assert far[tp] is None  # no record that late
    c.close()


def test_group_admin(broker, name):
    create(broker, name, 2)
    produce(broker, name, [b"x", b"y", b"z"])
    c = consumer(broker, name)
    c.subscribe([name])
    assert len(take(c, 3)) == 3
    c.commit()
    a = KafkaAdminClient(bootstrap_servers=broker.addr, request_timeout_ms=10000)
    try:
        [listed] = [g for g in a.list_groups() if g["group_id"] == name]
        assert (listed["group_state"], listed["protocol_type"]) == ("Stable", "consumer")
        desc = a.describe_groups([name])[name]
        assert desc["error"] is None and len(desc["members"]) == 1
        [assigned] = desc["members"][0]["member_assignment"]["assigned_partitions"]
        assert sorted(assigned["partitions"]) == [0, 1]
        offsets = a.list_group_offsets({name: None})[name]
        assert sum(o.offset for o in offsets.values()) == 3
        c.close()
        assert a.delete_groups([name]) == {name: "OK"}
        assert name not in [g["group_id"] for g in a.list_groups()]
    finally:
        a.close()


def test_topic_admin(broker, name):
    """kafka-python's admin: CreatePartitions, DescribeConfigs,
    IncrementalAlterConfigs and DescribeCluster as it speaks them."""
    from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions

    create(broker, name, 1)
    a = KafkaAdminClient(bootstrap_servers=broker.addr, request_timeout_ms=10000)
    try:
        a.create_partitions({name: NewPartitions(3)})
        assert len(a.describe_topics([name])[0]["partitions"]) == 3
        a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs={"retention.ms": "90000"})])
        described = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        text = repr(described)
        assert "retention.ms" in text and "90000" in text, text
        cluster = a.describe_cluster()
        assert cluster["cluster_id"] == "ferry"
        assert [b["port"] for b in cluster["brokers"]] == [int(broker.addr.rsplit(":", 1)[1])]
    finally:
        a.close()
