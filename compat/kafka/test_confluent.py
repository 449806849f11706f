"""confluent-kafka (librdkafka) against ferry: admin, idempotent acks=all
produce, a consumer group that commits, resume after a restart."""

import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from ferryproc import ferry


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.addr})


def create(broker, topic, partitions):
    a = admin(broker)  # kept alive until the answer comes
    futures = a.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=10)
    futures[topic].result(timeout=10)


def produce(broker, topic, records):
    """Sends (key, value) pairs idempotently with acks=all; returns the
    delivered (partition, offset) per value, failing on any delivery error."""
    p = Producer({"bootstrap.servers": broker.addr, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    delivered, errors = {}, []

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered[msg.value()] = (msg.partition(), msg.offset())

    for key, value in records:
        p.produce(topic, key=key, value=value, headers=[("h", value)], on_delivery=report)
    assert p.flush(30) == 0, "every record delivered in time"
    assert errors == []
    return delivered


def consumer(broker, group):
    return Consumer({
        "bootstrap.servers": broker.addr,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 10000,
    })


def drain(c, want, timeout=30):
    """Polls until `want` messages came; returns them."""
    got, deadline = [], time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        assert m.error() is None or m.error().code() == KafkaError._PARTITION_EOF, m.error()
        if m.error() is None:
            got.append(m)
    return got


def test_produce_group_commit_restart(broker, name):
    create(broker, name, 3)
    records = [(f"k{i % 7}".encode(), f"v{i}".encode()) for i in range(60)]
    delivered = produce(broker, name, records)
    assert len(delivered) == 60
    # Offsets per partition are dense from 0.
    for part in range(3):
        offs = sorted(o for p, o in delivered.values() if p == part)
        assert offs == list(range(len(offs)))
    # The same key always lands in the same partition.
    by_key = {}
    for key, value in records:
        by_key.setdefault(key, set()).add(delivered[value][0])
    assert all(len(parts) == 1 for parts in by_key.values())

    c = consumer(broker, name)
    c.subscribe([name])
    got = drain(c, 60)
    assert sorted(m.value() for m in got) == sorted(v for _, v in records)
    assert all(m.headers() == [("h", m.value())] for m in got)
    assert all(m.key() == records[int(m.value()[1:])][0] for m in got)
    c.commit(asynchronous=False)
    committed = c.committed([TopicPartition(name, p) for p in range(3)], timeout=10)
    assert sum(tp.offset for tp in committed) == 60
    c.close()

    broker.restart()
    more = [(None, f"after{i}".encode()) for i in range(9)]
    produce(broker, name, more)
    c = consumer(broker, name)
    c.subscribe([name])
    got = drain(c, 9)
    # The group resumes from its commits: only what came after.
    assert sorted(m.value() for m in got) == sorted(v for _, v in more)
    assert c.poll(1.0) is None
    c.close()


def test_offsets_for_times_and_watermarks(broker, name):
    create(broker, name, 1)
    produce(broker, name, [(None, b"early")])
    time.sleep(0.05)
    middle = int(time.time() * 1000)
    time.sleep(0.05)
    produce(broker, name, [(None, b"late1"), (None, b"late2")])
    c = consumer(broker, name)
    low, high = c.get_watermark_offsets(TopicPartition(name, 0), timeout=10)
    assert (low, high) == (0, 3)
    [tp] = c.offsets_for_times([TopicPartition(name, 0, middle)], timeout=10)
    assert tp.offset == 1
    c.assign([tp])
    got = drain(c, 2)
    assert [m.value() for m in got] == [b"late1", b"late2"]
    c.close()


def test_groups_admin(broker, name):
    create(broker, name, 2)
    produce(broker, name, [(None, b"x"), (None, b"y")])
    c = consumer(broker, name)
    c.subscribe([name])
    assert len(drain(c, 2)) == 2
    c.commit(asynchronous=False)
    a = admin(broker)
    listed = a.list_consumer_groups(request_timeout=10).result()
    assert name in [g.group_id for g in listed.valid]
    [desc] = a.describe_consumer_groups([name], request_timeout=10).values()
    desc = desc.result()
    assert len(desc.members) == 1
    assigned = sorted(tp.partition for tp in desc.members[0].assignment.topic_partitions)
    assert assigned == [0, 1]
    c.close()
    # An empty group can be deleted; its offsets go with it.
    a.delete_consumer_groups([name], request_timeout=10)[name].result()
    listed = a.list_consumer_groups(request_timeout=10).result()
    assert name not in [g.group_id for g in listed.valid]


def test_missing_topic_error(name):
    """Auto-creation off: a produce to a missing topic fails with Kafka's
    error, not a hang."""
    with ferry("--kafka-auto-create-topics", "false", listen=("kafka",)) as addrs:
        p = Producer({"bootstrap.servers": addrs["kafka"], "message.timeout.ms": 3000})
        errors = []
        p.produce(name, b"v", on_delivery=lambda err, msg: errors.append(err))
        p.flush(10)
        assert len(errors) == 1 and errors[0] is not None
        assert errors[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._MSG_TIMED_OUT, KafkaError._UNKNOWN_TOPIC)


def test_topic_admin(broker, name):
    """CreatePartitions, IncrementalAlterConfigs, AlterConfigs refusals in
    Kafka's codes, DescribeConfigs and DescribeCluster."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                       NewPartitions, ResourceType)

    create(broker, name, 1)
    a = admin(broker)
    a.create_partitions([NewPartitions(name, 4)])[name].result(timeout=10)
    md = a.list_topics(name, timeout=10)
    assert len(md.topics[name].partitions) == 4
    try:
        a.create_partitions([NewPartitions(name, 2)])[name].result(timeout=10)
        raise AssertionError("a topic shrank")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.INVALID_PARTITIONS

    res = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry("retention.ms", "120000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("segment.bytes", "2097152", incremental_operation=AlterConfigOpType.SET),
    ])
    for f in a.incremental_alter_configs([res]).values():
        f.result(timeout=10)
    res = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry("segment.bytes", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    for f in a.incremental_alter_configs([res]).values():
        f.result(timeout=10)
    [f] = a.describe_configs([ConfigResource(ResourceType.TOPIC, name)]).values()
    configs = f.result(timeout=10)
    assert configs["retention.ms"].value == "120000"
    assert configs["segment.bytes"].value == str(1 << 30), "deleted: back to the default"

    for cfg, code in (({"no.such.key": "1"}, KafkaError.INVALID_CONFIG),
                      ({"retention.ms": "-7"}, KafkaError.INVALID_CONFIG)):
        [f] = a.incremental_alter_configs([ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in cfg.items()])]).values()
        try:
            f.result(timeout=10)
            raise AssertionError(f"{cfg} accepted")
        except KafkaException as e:
            assert e.args[0].code() == code, e
    [f] = a.incremental_alter_configs([ConfigResource(ResourceType.TOPIC, "t-missing", incremental_configs=[
        ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.SET)])]).values()
    try:
        f.result(timeout=10)
        raise AssertionError("altered a missing topic")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, e

    # Broker settings come from ferry's config: altering them is refused.
    [f] = a.incremental_alter_configs([ConfigResource(ResourceType.BROKER, "0", incremental_configs=[
        ConfigEntry("num.partitions", "3", incremental_operation=AlterConfigOpType.SET)])]).values()
    try:
        f.result(timeout=10)
        raise AssertionError("altered a broker setting")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.INVALID_REQUEST, e

    cluster = a.describe_cluster(request_timeout=10).result()
    assert cluster.cluster_id == "ferry"
    [node] = cluster.nodes
    assert f"{node.host}:{node.port}" == broker.addr
    [f] = a.describe_configs([ConfigResource(ResourceType.BROKER, str(node.id))]).values()
    assert f.result(timeout=10)["auto.create.topics.enable"].value == "true"
