// The web console in a headless Chromium against a ferry it starts on free
// loopback ports: log in, see a queue filled through the API, purge it
// from the UI. Screenshots go to $FERRY_SCREENSHOTS (default: a temp dir).
//
// FERRY_CONSOLE_URL and FERRY_API_URL point the browser and the API calls
// elsewhere (say a dev server serving the console files from the tree).
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { chromium } = require('playwright-core');

// The longest any one step (a page load, a click, an API call) may take.
const STEP_MS = 15000;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

let ferry;
let browser;
let consoleUrl;
let apiUrl;
let screenshots;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls check() until it returns true; fails after STEP_MS. */
async function until(what, check) {
  const deadline = Date.now() + STEP_MS;
  let last;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (e) {
      last = e;
    }
    await sleep(200);
  }
  assert.fail(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

async function api(method, apiPath, body) {
  const response = await fetch(`${apiUrl}${apiPath}`, {
    method,
    headers: {
      Authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}`,
      ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(STEP_MS),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${apiPath}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

before(async () => {
  const bin = process.env.FERRY_BIN || path.join(__dirname, '..', '..', 'target', 'debug', 'ferry');
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-console-'));
  screenshots = process.env.FERRY_SCREENSHOTS || root;
  fs.mkdirSync(screenshots, { recursive: true });
  ferry = spawn(bin, ['serve', '--data-dir', path.join(root, 'data'), '--admin-listen', '127.0.0.1:0',
    '--aws-listen', 'off', '--kafka-listen', 'off', '--amqp-listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: ferry.stdout });
  const admin = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('ferry did not start')), 30000);
    lines.on('line', (line) => {
      const m = line.match(/^listening admin (\S+)$/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    ferry.on('exit', (code) => reject(new Error(`ferry exited with ${code}`)));
  });
  consoleUrl = process.env.FERRY_CONSOLE_URL || `http://${admin}`;
  apiUrl = process.env.FERRY_API_URL || `http://${admin}`;
  await until('ferry to be ready', async () => (await fetch(`${apiUrl}/api/health/ready`, { signal: AbortSignal.timeout(2000) })).ok);
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
});

after(async () => {
  if (browser) await Promise.race([browser.close(), sleep(STEP_MS)]);
  if (!ferry) return;
  const exited = new Promise((resolve) => ferry.once('exit', (code) => resolve(code)));
  ferry.kill('SIGTERM');
  // Do not wait for ever on an exit notice that may never come.
  const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 30000).unref())]);
  ferry.unref();
  if (code !== 'timeout') assert.strictEqual(code, 0, 'ferry exits cleanly on SIGTERM');
});

/** A fresh tab (its own sessionStorage, so logged out) of the given size. */
async function newPage(t, viewport = DESKTOP) {
  const context = await browser.newContext({ viewport });
  t.after(() => context.close());
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.setDefaultNavigationTimeout(STEP_MS);
  return page;
}

async function logIn(page, password = 'guest') {
  await page.goto(consoleUrl);
  await page.getByLabel('User').fill('guest');
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
}

/** The text of the cell under the header `column` in the row naming `name`. */
async function cell(page, name, column) {
  const headers = await page.getByRole('columnheader').allTextContents();
  const index = headers.findIndex((h) => h.replace(/[▲▼]/, '').trim() === column);
  assert.ok(index >= 0, `no column ${column} in ${headers}`);
  const row = page.getByRole('row').filter({ has: page.getByRole('link', { name, exact: true }) });
  return (await row.getByRole('cell').nth(index).textContent()).trim();
}

/** The value of the number labelled `label` on the page. */
const stat = (page, label) => page.locator('.stat', { has: page.locator('dt', { hasText: new RegExp(`^${label}$`) }) })
  .locator('dd').textContent();

const unique = () => `console-${Math.random().toString(16).slice(2, 10)}`;

test('a wrong password shows the login error', { timeout: 60000 }, async (t) => {
  const page = await newPage(t);
  await logIn(page, 'not-the-password');
  const error = page.getByRole('alert');
  await error.waitFor();
  assert.match(await error.textContent(), /refused/i);
  assert.strictEqual(await page.getByRole('heading', { name: 'Overview' }).count(), 0);
});

test('log in and see the overview with its charts', { timeout: 60000 }, async (t) => {
  const page = await newPage(t);
  await logIn(page);
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  await page.getByText(/^ferry \S+ · up /).waitFor();
  // Lines need two samples: the second comes after one poll interval. A
  // quiet broker draws flat lines, which have no height: attached, not visible.
  await page.locator('.plot path.line').first().waitFor({ state: 'attached' });
  await page.screenshot({ path: path.join(screenshots, 'overview.png'), fullPage: true });
});

test('a queue filled through the API shows in Queues and is purged from the UI', { timeout: 120000 }, async (t) => {
  const name = unique();
  const queue = `/api/queues/%2F/${name}`;
  await api('PUT', queue, { durable: true });
  for (let i = 0; i < 5; i++) await api('POST', `${queue}/messages`, { body: `message ${i}`, persistent: true });

  const page = await newPage(t);
  await logIn(page);
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Queues' }).click();
  await page.getByRole('heading', { name: 'Queues' }).waitFor();
  await until('5 ready messages in the Queues table', async () => (await cell(page, name, 'Ready')) === '5');
  await page.screenshot({ path: path.join(screenshots, 'queues.png'), fullPage: true });

  await page.getByRole('link', { name, exact: true }).click();
  await page.getByRole('heading', { name, exact: true }).waitFor();
  await until('5 ready messages on the queue page', async () => (await stat(page, 'Ready')) === '5');
  await page.screenshot({ path: path.join(screenshots, 'queue.png'), fullPage: true });

  await page.getByRole('button', { name: 'Purge', exact: true }).click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  await dialog.getByRole('button', { name: 'Purge', exact: true }).click();
  await until('the page to show 0 ready messages', async () => (await stat(page, 'Ready')) === '0');
  assert.strictEqual((await api('GET', queue)).messages.ready, 0);

  const phone = await newPage(t, PHONE);
  await logIn(phone);
  await phone.getByRole('heading', { name: 'Overview' }).waitFor();
  await phone.goto(`${consoleUrl}/#/queues`);
  await until('the queue on a phone', async () => (await cell(phone, name, 'Ready')) === '0');
  await phone.screenshot({ path: path.join(screenshots, 'phone-queues.png'), fullPage: true });
});

test('streams and consumer groups show in Streams', { timeout: 120000 }, async (t) => {
  const name = unique();
  await api('PUT', `/api/streams/%2F/${name}`, { partitions: 2 });
  await api('POST', `/api/groups/%2F/${name}-readers/reset-offsets`, { stream: name, to: 'earliest' });

  const page = await newPage(t);
  await logIn(page);
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Streams' }).click();
  await page.getByRole('heading', { name: 'Streams', exact: true }).waitFor();
  // A table's cell in the row that holds `text`, by column header.
  const cellOf = async (table, text, column) => {
    const t = page.getByRole('table', { name: table, exact: true });
    const headers = await t.getByRole('columnheader').allTextContents();
    const index = headers.findIndex((x) => x.replace(/[▲▼]/g, '').trim() === column);
    assert.ok(index >= 0, `no column ${column} in ${headers}`);
    const row = t.getByRole('row').filter({ has: page.getByRole('cell', { name: text, exact: true }) });
    return (await row.getByRole('cell').nth(index).textContent()).trim();
  };
  await until('the stream with its 2 partitions', async () => (await cellOf('Streams', name, 'Partitions')) === '2');
  await until('the group, empty, with no lag', async () => (await cellOf('Consumer groups', `${name}-readers`, 'State')) === 'Empty'
    && (await cellOf('Consumer groups', `${name}-readers`, 'Lag')) === '0');
  await page.screenshot({ path: path.join(screenshots, 'streams.png'), fullPage: true });
});
