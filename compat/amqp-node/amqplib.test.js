// amqplib (Node's AMQP 0-9-1 client) against a ferry it starts on a free
// loopback port.
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const amqp = require('amqplib');

let ferry;
let url;

before(async () => {
  const bin = process.env.FERRY_BIN || path.join(__dirname, '..', '..', 'target', 'debug', 'ferry');
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-amqplib-'));
  ferry = spawn(bin, ['serve', '--data-dir', data, '--admin-listen', 'off', '--aws-listen', 'off',
    '--kafka-listen', 'off', '--amqp-listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: ferry.stdout });
  url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('ferry did not start')), 30000);
    lines.on('line', (line) => {
      const m = line.match(/^listening amqp (\S+)$/);
      if (m) { clearTimeout(timer); resolve(`amqp://guest:guest@${m[1]}`); }
    });
    ferry.on('exit', (code) => reject(new Error(`ferry exited with ${code}`)));
  });
});

after(async () => {
  const exited = new Promise((resolve) => ferry.once('exit', (code) => resolve(code)));
  ferry.kill('SIGTERM');
  // Do not wait for ever on an exit notice that may never come.
  const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 30000).unref())]);
  ferry.unref();
  if (code !== 'timeout') assert.strictEqual(code, 0, 'ferry exits cleanly on SIGTERM');
});

const unique = () => `node-${Math.random().toString(16).slice(2, 10)}`;

test('publish with confirms, consume and ack', async () => {
  const conn = await amqp.connect(url);
  const ch = await conn.createConfirmChannel();
  const q = unique();
  await ch.assertQueue(q, { durable: true });
  for (let i = 0; i < 20; i++) {
    ch.sendToQueue(q, Buffer.from(`m${i}`), { persistent: true, headers: { i } });
  }
  await ch.waitForConfirms();
  const got = [];
  await new Promise((resolve) => {
    ch.prefetch(5);
    ch.consume(q, (msg) => {
      got.push([msg.content.toString(), msg.properties.headers.i]);
      ch.ack(msg);
      if (got.length === 20) resolve();
    });
  });
  assert.deepStrictEqual(got, Array.from({ length: 20 }, (_, i) => [`m${i}`, i]));
  await conn.close();
});

test('topic routing and dead letters with x-death', async () => {
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  const x = unique();
  const dead = unique();
  const live = unique();
  await ch.assertExchange(x, 'topic', { durable: false });
  await ch.assertQueue(dead);
  await ch.assertQueue(live, { deadLetterExchange: '', deadLetterRoutingKey: dead });
  await ch.bindQueue(live, x, 'orders.*');
  ch.publish(x, 'orders.new', Buffer.from('o1'));
  ch.publish(x, 'invoices.new', Buffer.from('unrouted'));
  let msg;
  for (let i = 0; i < 100 && !msg; i++) {
    msg = await ch.get(live);
    if (!msg) await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(msg, 'routed');
  assert.strictEqual(msg.fields.routingKey, 'orders.new');
  ch.nack(msg, false, false);
  let deadMsg;
  for (let i = 0; i < 100 && !deadMsg; i++) {
    deadMsg = await ch.get(dead, { noAck: true });
    if (!deadMsg) await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(deadMsg, 'dead-lettered');
  const death = deadMsg.properties.headers['x-death'][0];
  assert.strictEqual(death.reason, 'rejected');
  assert.strictEqual(death.queue, live);
  assert.strictEqual(await ch.get(live), false);
  await conn.close();
});

test('a missing queue closes the channel with 404, not the connection', async () => {
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  ch.on('error', () => {});
  await assert.rejects(ch.checkQueue(unique()), /404/);
  const ch2 = await conn.createChannel();
  const ok = await ch2.assertQueue('', { exclusive: true });
  assert.match(ok.queue, /^amq\.gen-/);
  await conn.close();
});

test('direct reply-to request and reply', async () => {
  const conn = await amqp.connect(url);
  const server = await conn.createChannel();
  const client = await conn.createChannel();
  const rpc = unique();
  await server.assertQueue(rpc);
  await server.consume(rpc, (msg) => {
    server.sendToQueue(msg.properties.replyTo, Buffer.from(`re: ${msg.content}`), {
      correlationId: msg.properties.correlationId,
    });
    server.ack(msg);
  });
  const answer = new Promise((resolve) => {
    client.consume('amq.rabbitmq.reply-to', (msg) => resolve(msg), { noAck: true });
  });
  await new Promise((r) => setTimeout(r, 50));
  client.sendToQueue(rpc, Buffer.from('ping'), { replyTo: 'amq.rabbitmq.reply-to', correlationId: 'c1' });
  const msg = await answer;
  assert.strictEqual(msg.content.toString(), 're: ping');
  assert.strictEqual(msg.properties.correlationId, 'c1');
  await conn.close();
});
