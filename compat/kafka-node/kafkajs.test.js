// kafkajs (Node's Kafka client) against a ferry it starts on a free
// loopback port, restarted on the same data directory mid-test.
const { test } = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { Kafka, Partitioners, logLevel } = require('kafkajs');

const bin = process.env.FERRY_BIN || path.join(__dirname, '..', '..', 'target', 'debug', 'ferry');

// Starts ferry on `data` with only the Kafka listener; resolves to
// { proc, addr }.
function start(data) {
  const proc = spawn(bin, ['serve', '--data-dir', data, '--admin-listen', 'off', '--aws-listen', 'off',
    '--amqp-listen', 'off', '--kafka-listen', '127.0.0.1:0',
    '--kafka-group-initial-rebalance-delay-ms', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: proc.stdout });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('ferry did not start')), 30000);
    lines.on('line', (line) => {
      const m = line.match(/^listening kafka (\S+)$/);
      if (m) { clearTimeout(timer); resolve({ proc, addr: m[1] }); }
    });
    proc.on('exit', (code) => reject(new Error(`ferry exited with ${code}`)));
  });
}

async function stop({ proc }) {
  const exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
  proc.kill('SIGTERM');
  const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 30000).unref())]);
  assert.strictEqual(code, 0, 'ferry exits cleanly on SIGTERM');
}

const client = (addr) => new Kafka({ clientId: 'compat', brokers: [addr], logLevel: logLevel.NOTHING });

// Consumes in `group` until `want` messages came (or 20 s pass), commits
// what it read and leaves the group; resolves to the values.
async function consume(kafka, topic, group, want) {
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 1000 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const got = [];
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  const timer = setTimeout(() => done(), 20000);
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      got.push(message.value.toString());
      await consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
      if (got.length === want) done();
    },
  });
  await finished;
  clearTimeout(timer);
  await consumer.disconnect();
  return got;
}

test('produce with acks=all, consume in a group, commit, resume after a restart', async () => {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-kafkajs-'));
  const topic = `node-${Math.random().toString(16).slice(2, 10)}`;
  let ferry = await start(data);
  try {
    let kafka = client(ferry.addr);
    const admin = kafka.admin();
    await admin.connect();
    assert.strictEqual(await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true }), true);
    const meta = await admin.fetchTopicMetadata({ topics: [topic] });
    assert.strictEqual(meta.topics[0].partitions.length, 3);
    await admin.disconnect();

    const producer = kafka.producer({ idempotent: true, createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    const values = Array.from({ length: 30 }, (_, i) => `v${i}`);
    const sent = await producer.send({
      topic,
      acks: -1,
      messages: values.map((v, i) => ({ key: `k${i % 4}`, value: v, headers: { n: `${i}` } })),
    });
    assert.ok(sent.every((r) => r.errorCode === 0));
    await producer.disconnect();

    const got = await consume(kafka, topic, topic, 30);
    assert.deepStrictEqual([...got].sort(), [...values].sort());

    const admin2 = kafka.admin();
    await admin2.connect();
    const offsets = await admin2.fetchOffsets({ groupId: topic, topics: [topic] });
    const total = offsets[0].partitions.reduce((n, p) => n + Number(p.offset), 0);
    assert.strictEqual(total, 30);
    await admin2.disconnect();

    await stop(ferry);
    ferry = await start(data);
    kafka = client(ferry.addr);
    const p2 = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await p2.connect();
    await p2.send({ topic, acks: -1, messages: [{ value: 'after1' }, { value: 'after2' }] });
    await p2.disconnect();
    // The group's commits survived the restart: only the new records come.
    const again = await consume(kafka, topic, topic, 2);
    assert.deepStrictEqual([...again].sort(), ['after1', 'after2']);
  } finally {
    await stop(ferry);
  }
});
