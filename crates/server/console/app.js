// The ferry console: a single-page admin UI over the admin API
// (docs/admin-api.md). Plain DOM code with no framework and no build step,
// because the file is embedded in the ferry binary as it is.
//
// Every string that comes from the server (queue names, message bodies…)
// reaches the page through text nodes and attributes, never as HTML.

const POLL_MS = 5000;
const OVERVIEW_SPAN_MS = 10 * 60 * 1000;
const QUEUE_SPAN_MS = 5 * 60 * 1000;

// ---- DOM helpers ------------------------------------------------------------

/** Creates an element; string children become text nodes. */
function h(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** The same for SVG elements. */
function svg(tag, attrs = {}, ...children) {
  return build(document.createElementNS('http://www.w3.org/2000/svg', tag), attrs, children);
}

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : value);
  }
  el.append(...children.flat(Infinity).filter((c) => c !== undefined && c !== null && c !== false));
  return el;
}

const $ = (selector) => document.querySelector(selector);

// ---- Formatting -------------------------------------------------------------

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const compact = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 2 });

const missing = (n) => n === undefined || n === null;
const fmtInt = (n) => (missing(n) ? '–' : integer.format(n));
const fmtRate = (n) => (missing(n) ? '–' : decimal.format(n));
const fmtTime = (ms) => (missing(ms) ? '–' : new Date(ms).toLocaleString());
const yesNo = (b) => (b ? 'yes' : 'no');
const capitalize = (s) => s.charAt(0).toUpperCase() + s.slice(1);

/** "3d 4h", "5m 12s", "42s": the two largest units are precise enough. */
function fmtDuration(seconds) {
  const units = [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]];
  let rest = Math.max(0, Math.floor(seconds));
  const parts = [];
  for (const [unit, size] of units) {
    const n = Math.floor(rest / size);
    rest -= n * size;
    if (n > 0 || parts.length > 0) parts.push(`${n}${unit}`);
    if (parts.length === 2) break;
  }
  return parts.length ? parts.join(' ') : '0s';
}

function fmtBytes(n) {
  if (missing(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${decimal.format(n)} ${units[i]}`;
}

const fmtJson = (value) => (value && Object.keys(value).length ? JSON.stringify(value) : '–');

// ---- Session ----------------------------------------------------------------
// The credentials live in sessionStorage: they survive a reload but not the
// tab, and every API call sends them as HTTP basic authentication.

const SESSION_KEY = 'ferry.console.login';

const session = {
  load() {
    try { return JSON.parse(sessionStorage.getItem(SESSION_KEY)); } catch { return null; }
  },
  save(login) { sessionStorage.setItem(SESSION_KEY, JSON.stringify(login)); },
  clear() { sessionStorage.removeItem(SESSION_KEY); },
};

/** base64 of UTF-8 (btoa alone only takes Latin-1). */
function basicToken(user, password) {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  return btoa(String.fromCharCode(...bytes));
}

// ---- API --------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** `/api/queues/%2F/jobs` from ('queues', '/', 'jobs'). */
const apiPath = (...parts) => `/api/${parts.map(encodeURIComponent).join('/')}`;

/** One API call with the given credentials; rejects with an ApiError. */
async function request(token, method, path, body) {
  const headers = {
    Authorization: `Basic ${token}`,
    // Asks the server to leave out WWW-Authenticate on 401, so that the
    // browser does not open its own login dialog over the console.
    'X-Ferry-Console': '1',
  };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, `${method} ${path}: the server could not be reached`);
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON: described by the status below */ }
  if (!response.ok) {
    const message = data && data.reason
      ? `${data.reason} (${response.status} ${data.error})`
      : `${method} ${path}: ${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return data;
}

/** An API call as the logged-in user; a 401 ends the session. */
async function api(method, path, body) {
  const login = session.load();
  try {
    return await request(login && login.token, method, path, body);
  } catch (e) {
    if (e.status === 401) showLogin(`The server no longer accepts this login: ${e.message}. Please log in again.`);
    throw e;
  }
}

// ---- Notices and confirmation ---------------------------------------------

// Polling repeats failures every few seconds (say an endpoint this server
// does not have): a message the user dismissed stays dismissed until they
// change page or retry the action themselves.
const dismissed = new Set();

function notify(kind, text, { fromPoll = false } = {}) {
  const box = $('#notices');
  if (fromPoll && dismissed.has(text)) return;
  if ([...box.children].some((n) => n.dataset.text === text)) return;
  const item = h('div', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status', 'data-text': text },
    h('span', {}, text),
    h('button', {
      type: 'button', class: 'ghost dismiss', 'aria-label': 'Dismiss',
      onclick: () => { item.remove(); dismissed.add(text); },
    }, '×'));
  box.append(item);
  if (kind !== 'error') setTimeout(() => item.remove(), 5000);
}

function reportError(e, options) {
  if (e instanceof AggregateError) {
    for (const one of e.errors) reportError(one, options);
    return;
  }
  if (e.status === 401) return; // the login form says it
  if (!options || !options.fromPoll) dismissed.delete(e.message);
  notify('error', e.message, options);
}

/** An in-page replacement for window.confirm; resolves to true on confirm. */
function confirmAction({ title, text, action }) {
  const dialog = $('#confirm');
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  $('#confirm-ok').textContent = action;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  });
}

// ---- Form and table building blocks ----------------------------------------

/**
 * Waits for all the parts of a page; each is shown as soon as it arrives,
 * so one failing endpoint leaves the others on screen. Rejects with every
 * failure, to report each.
 */
async function allParts(parts) {
  const failures = (await Promise.allSettled(parts)).filter((r) => r.status === 'rejected').map((r) => r.reason);
  if (failures.length) throw new AggregateError(failures);
}

/** A button whose action is async: disabled while it runs, failures reported. */
function actionButton(label, action, attrs = {}) {
  const button = h('button', { type: 'button', ...attrs }, label);
  button.addEventListener('click', async () => {
    button.disabled = true;
    try { await action(); } catch (e) { reportError(e); } finally { button.disabled = false; }
  });
  return button;
}

/** Calls action with the form's data on submit, the same way. */
function onSubmit(form, action) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const submit = form.querySelector('[type=submit]');
    submit.disabled = true;
    try { await action(new FormData(form)); } catch (e) { reportError(e); } finally { submit.disabled = false; }
  });
  return form;
}

function field(label, control) {
  return h('label', { class: 'field' }, h('span', { class: 'field-label' }, label), control);
}

function checkbox(label, name, checked) {
  return h('label', { class: 'check' }, h('input', { type: 'checkbox', name, checked }), label);
}

function namespaceSelect() {
  const select = h('select', { name: 'namespace', required: true });
  api('GET', apiPath('namespaces'))
    .then((list) => select.replaceChildren(...list.map((ns) => h('option', { value: ns.name }, ns.name))))
    .catch(reportError);
  return select;
}

function section(title, ...children) {
  return h('section', { class: 'card', 'aria-label': title }, h('h2', {}, title), ...children);
}

function stats(items) {
  return h('dl', { class: 'stats' }, items.map(([label, value]) =>
    h('div', { class: 'stat' }, h('dt', {}, label), h('dd', {}, value))));
}

function tag(text) {
  return h('span', { class: 'tag' }, text);
}

const queueHref = (ns, name) => `#/queues/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;
const routerHref = (ns, name) => `#/routers/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;

/**
 * A table re-rendered from rows on every refresh. Columns: label, value(row)
 * (what is shown and sorted on), optional cell(row) for a richer cell,
 * num for right-aligned numbers, format for the shown text. With sortable,
 * clicking a header sorts by it; a second click reverses.
 */
function dataTable({ label, columns, empty, sortable = false, sortBy = 0 }) {
  let rows = [];
  let sort = { column: sortBy, dir: 1 };
  const headRow = h('tr');
  const body = h('tbody');
  const table = h('table', { 'aria-label': label }, h('thead', {}, headRow), body);

  function renderHead() {
    headRow.replaceChildren(...columns.map((col, i) => {
      const th = h('th', { scope: 'col', class: col.num ? 'num' : '' });
      if (!sortable || col.sortable === false) return build(th, {}, [col.label]);
      const active = sort.column === i;
      if (active) th.setAttribute('aria-sort', sort.dir > 0 ? 'ascending' : 'descending');
      return build(th, {}, [h('button', {
        type: 'button', class: 'sort',
        onclick: () => { sort = { column: i, dir: active ? -sort.dir : (col.num ? -1 : 1) }; render(); },
      }, col.label, h('span', { class: 'arrow', 'aria-hidden': 'true' }, active ? (sort.dir > 0 ? '▲' : '▼') : ''))]);
    }));
  }

  function compare(a, b) {
    const col = columns[sort.column];
    const x = col.value(a);
    const y = col.value(b);
    if (missing(x) || missing(y)) return missing(x) - missing(y); // blanks last either way
    const order = typeof x === 'number' ? x - y : String(x).localeCompare(String(y));
    return order * sort.dir;
  }

  const text = (col, v) => (missing(v) ? '–' : (col.format || String)(v));

  function render() {
    renderHead();
    const shown = sortable ? [...rows].sort(compare) : rows;
    if (!shown.length) {
      body.replaceChildren(h('tr', {}, h('td', { colspan: columns.length, class: 'empty' }, empty)));
      return;
    }
    body.replaceChildren(...shown.map((row) => h('tr', {}, columns.map((col) =>
      h('td', { class: col.num ? 'num' : '' }, col.cell ? col.cell(row) : text(col, col.value(row)))))));
  }

  render();
  return {
    el: h('div', { class: 'table-wrap' }, table),
    show(newRows) { rows = newRows; render(); },
  };
}

// ---- Charts -------------------------------------------------------------------
// Line charts drawn as inline SVG at the width of their box, redrawn when
// it changes so that text keeps its size on a phone.

const CHART_HEIGHT = 180;
const MARGIN = { top: 10, right: 14, bottom: 24, left: 44 };

/** The smallest of 1, 2 or 5 × 10^k that is at least x: round tick steps. */
function niceStep(x) {
  const power = 10 ** Math.floor(Math.log10(x));
  return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= x);
}

/**
 * A chart of the last span milliseconds; until there is that much history,
 * of the time since the first sample, so that a new chart is not a dot at
 * the right edge. draw() takes series of { label, points: [[time, value]] };
 * a unit ('/s') marks rates, shown with a decimal; minTop keeps a flat
 * zero line from spreading 0–0.001 over the height.
 */
function lineChart(title, { span, unit = '', minTop = 1 }) {
  const legend = h('ul', { class: 'legend' });
  const plot = h('div', { class: 'plot' });
  const el = h('figure', { class: 'chart' }, h('figcaption', {}, title), legend, plot);
  let series = [];

  function draw() {
    const width = plot.clientWidth;
    if (!width) return;
    const now = Date.now();
    const oldest = Math.min(now, ...series.flatMap((s) => s.points.map(([t]) => t)));
    const shown = Math.min(span, Math.max(60000, now - oldest));
    const x0 = now - shown;
    const lines = series.map((s, i) => ({ n: i + 1, points: s.points.filter(([t, v]) => t >= x0 && !missing(v)) }));
    const highest = Math.max(minTop, ...lines.flatMap((s) => s.points.map(([, v]) => v)));
    const step = niceStep(highest / 4);
    const top = step * Math.ceil(highest / step);
    const innerW = width - MARGIN.left - MARGIN.right;
    const innerH = CHART_HEIGHT - MARGIN.top - MARGIN.bottom;
    const x = (t) => MARGIN.left + ((t - x0) / shown) * innerW;
    const y = (v) => MARGIN.top + innerH - (v / top) * innerH;

    const grid = [];
    for (let v = 0; v <= top + step / 2; v += step) {
      grid.push(svg('line', { class: 'grid', x1: MARGIN.left, x2: width - MARGIN.right, y1: y(v), y2: y(v) }),
        svg('text', { class: 'tick', x: MARGIN.left - 6, y: y(v), 'text-anchor': 'end', 'dominant-baseline': 'middle' },
          compact.format(v)));
    }
    // Time ticks on round times, as many as fit without overlapping.
    const timeStep = [10, 15, 30, 60, 120, 300, 600].map((s) => s * 1000).find((ms) => shown / ms <= innerW / 90) ?? shown;
    const clock = timeStep < 60000 ? { hour: 'numeric', minute: '2-digit', second: '2-digit' } : { hour: 'numeric', minute: '2-digit' };
    for (let t = Math.ceil(x0 / timeStep) * timeStep; x(t) + 36 <= width; t += timeStep) {
      grid.push(svg('text', { class: 'tick', x: x(t), y: CHART_HEIGHT - 6, 'text-anchor': 'middle' },
        new Date(t).toLocaleTimeString([], clock)));
    }
    const paths = lines.filter((s) => s.points.length > 1).map((s) => svg('path', {
      class: `line series-${s.n}`,
      d: s.points.map(([t, v], j) => `${j ? 'L' : 'M'}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(''),
    }));
    const waiting = !paths.length && svg('text', { class: 'waiting', x: MARGIN.left + innerW / 2, y: MARGIN.top + innerH / 2, 'text-anchor': 'middle' },
      'Collecting data…');
    plot.replaceChildren(svg('svg', { viewBox: `0 0 ${width} ${CHART_HEIGHT}`, height: CHART_HEIGHT, role: 'img', 'aria-label': title },
      grid, svg('line', { class: 'axis', x1: MARGIN.left, x2: width - MARGIN.right, y1: y(0), y2: y(0) }), paths, waiting));

    legend.replaceChildren(...series.map((s, i) => {
      const latest = s.points.length ? s.points[s.points.length - 1][1] : null;
      return h('li', {}, h('span', { class: `swatch series-${i + 1}`, 'aria-hidden': 'true' }), `${s.label} `,
        h('strong', {}, missing(latest) ? '–' : `${unit ? fmtRate(latest) : fmtInt(latest)}${unit}`));
    }));
  }

  new ResizeObserver(draw).observe(plot);
  return { el, draw(newSeries) { series = newSeries; draw(); } };
}

/** History samples → chart series, one per [label, key] pair. */
const seriesOf = (history, fields) => fields.map(([label, key]) => ({
  label, points: history.map((sample) => [sample.t, sample[key]]),
}));

// ---- Polling and the overview history -----------------------------------------
// The overview is sampled on every page, so that its charts already show
// the last minutes when the user comes back to it.

const overview = { next: null, history: [] }; // next: this round's sample

async function sampleOverview() {
  const o = await api('GET', apiPath('overview'));
  const t = Date.now();
  overview.history.push({ t, ...o.messages, ...o.rates });
  overview.history = overview.history.filter((sample) => sample.t >= t - OVERVIEW_SPAN_MS);
  return o;
}

let currentPage = null;
let pollTimer = null;
let pollRound = 0;

/** Refreshes the overview and the current page now, then every POLL_MS. */
async function poll() {
  clearTimeout(pollTimer);
  const round = ++pollRound;
  const page = currentPage;
  overview.next = sampleOverview();
  const results = await Promise.allSettled([overview.next, page.refresh()]);
  // A newer round (the user navigated or acted) owns the timer and the page.
  if (round !== pollRound) return;
  for (const r of results) if (r.status === 'rejected') reportError(r.reason, { fromPoll: true });
  if (session.load()) pollTimer = setTimeout(poll, POLL_MS);
}

// ---- Pages ----------------------------------------------------------------------
// A page builds its static parts into the page element and returns
// refresh(), which fetches and re-renders what changes.

function overviewPage(main) {
  const subtitle = h('p', { class: 'muted' });
  const alarm = h('div', { class: 'alarm', role: 'alert', hidden: true });
  const totals = h('div');
  const rates = lineChart('Message rates (per second)', { span: OVERVIEW_SPAN_MS, unit: '/s' });
  const depth = lineChart('Queued messages', { span: OVERVIEW_SPAN_MS, minTop: 4 });
  main.append(h('h1', {}, 'Overview'), subtitle, alarm, totals,
    h('div', { class: 'charts' }, h('div', { class: 'card' }, rates.el), h('div', { class: 'card' }, depth.el)));

  return {
    async refresh() {
      const o = await overview.next;
      subtitle.textContent = `ferry ${o.version} · up ${fmtDuration(o.uptime_seconds)}`;
      alarm.hidden = !o.alarm;
      alarm.replaceChildren(h('strong', {}, 'Resource alarm: '), o.alarm ?? '');
      totals.replaceChildren(stats([
        ['Namespaces', fmtInt(o.namespaces)],
        ['Queues', fmtInt(o.queues)],
        ['Ready', fmtInt(o.messages.ready)],
        ['Unacked', fmtInt(o.messages.unacked)],
        ['Delayed', fmtInt(o.messages.delayed)],
        ['Consumers', fmtInt(o.consumers)],
      ]));
      rates.draw(seriesOf(overview.history, [['Published', 'published'], ['Delivered', 'delivered'], ['Acked', 'acked']]));
      depth.draw(seriesOf(overview.history, [['Ready', 'ready'], ['Unacked', 'unacked']]));
    },
  };
}

function queuesPage(main) {
  let queues = [];
  const filter = h('input', { type: 'search', placeholder: 'Filter by name or namespace' });
  const table = dataTable({
    label: 'Queues',
    sortable: true,
    sortBy: 1,
    empty: 'No queues.',
    columns: [
      { label: 'Namespace', value: (q) => q.namespace },
      { label: 'Name', value: (q) => q.name, cell: (q) => h('a', { href: queueHref(q.namespace, q.name) }, q.name) },
      { label: 'Type', value: (q) => queueType(q).join(' '), cell: (q) => queueType(q).map((t) => tag(t)) },
      { label: 'Ready', num: true, value: (q) => q.messages.ready, format: fmtInt },
      { label: 'Unacked', num: true, value: (q) => q.messages.unacked, format: fmtInt },
      { label: 'Delayed', num: true, value: (q) => q.messages.delayed, format: fmtInt },
      { label: 'Consumers', num: true, value: (q) => q.consumers, format: fmtInt },
      { label: 'Publish /s', num: true, value: (q) => q.rates?.published, format: fmtRate },
      { label: 'Deliver /s', num: true, value: (q) => q.rates?.delivered, format: fmtRate },
    ],
  });
  const showFiltered = () => {
    const needle = filter.value.trim().toLowerCase();
    table.show(queues.filter((q) => `${q.namespace} ${q.name}`.toLowerCase().includes(needle)));
  };
  filter.addEventListener('input', showFiltered);

  const form = onSubmit(h('form', { class: 'form-row' },
    field('Namespace', namespaceSelect()),
    field('Name', h('input', { name: 'name', required: true, autocomplete: 'off' })),
    checkbox('Durable', 'durable', true),
    checkbox('FIFO', 'fifo', false),
    h('button', { type: 'submit', class: 'primary' }, 'Declare queue')), async (data) => {
    const ns = data.get('namespace');
    const name = data.get('name').trim();
    await api('PUT', apiPath('queues', ns, name), { durable: data.has('durable'), fifo: data.has('fifo') });
    notify('info', `Queue ${name} declared in ${ns}.`);
    form.reset();
    await poll();
  });

  main.append(h('h1', {}, 'Queues'),
    h('div', { class: 'toolbar' }, field('Filter queues', filter)),
    table.el,
    section('Declare a queue', form));

  return {
    async refresh() {
      queues = await api('GET', apiPath('queues'));
      showFiltered();
    },
  };
}

function queueType(q) {
  return [q.durable ? 'durable' : 'transient', q.fifo && 'fifo', q.exclusive && 'exclusive', q.auto_delete && 'auto-delete']
    .filter(Boolean);
}

/** A queue's counts, in the order a message meets them. */
const COUNTS = ['published', 'delivered', 'redelivered', 'acked', 'dead_lettered', 'expired', 'dropped'];

function deadLetterText(dl) {
  if (!dl) return 'none';
  const after = dl.max_deliveries ? ` after ${fmtInt(dl.max_deliveries)} deliveries` : '';
  if (dl.discard) return `discarded${after}`;
  if (dl.queue) return `to queue ${dl.queue}${after}`;
  return `to router ${dl.router || '(default)'} with key ${dl.routing_key ?? '(original)'}${after}`;
}

function queuePage(main, ns, name) {
  const path = (...rest) => apiPath('queues', ns, name, ...rest);
  const history = [];
  const tags = h('span', { class: 'tags' });
  const numbers = h('div');
  const depth = lineChart('Depth', { span: QUEUE_SPAN_MS, minTop: 4 });
  const rates = lineChart('Rates (per second)', { span: QUEUE_SPAN_MS, unit: '/s' });
  const counts = h('div');
  const settings = h('div');

  const consumers = dataTable({
    label: 'Consumers',
    empty: 'No consumers.',
    columns: [
      { label: 'Tag', value: (c) => c.tag },
      { label: 'Connection', value: (c) => c.connection },
      { label: 'Channel', num: true, value: (c) => c.channel },
      { label: 'Prefetch', num: true, value: (c) => c.prefetch, format: fmtInt },
      { label: 'Acks', value: (c) => (c.ack_required ? 'manual' : 'automatic') },
    ],
  });
  const bindings = dataTable({
    label: 'Bindings',
    empty: 'No bindings.',
    columns: [
      // The default router (named "") has no page of its own.
      { label: 'Router', value: (b) => b.router, cell: (b) => (b.router ? h('a', { href: routerHref(ns, b.router) }, b.router) : '(default)') },
      { label: 'Routing key', value: (b) => b.key },
      { label: 'Arguments', value: (b) => fmtJson(b.arguments) },
    ],
  });
  const peeked = dataTable({
    label: 'Peeked messages',
    empty: 'Nothing peeked yet, or no ready messages.',
    columns: [
      { label: 'Body', value: (m) => m.body, cell: (m) => [m.body_encoding === 'base64' && tag('base64'), h('pre', { class: 'body' }, m.body)] },
      { label: 'Headers', value: (m) => fmtJson(m.headers) },
      { label: 'Deliveries', num: true, value: (m) => m.delivery_count, format: fmtInt },
      { label: 'Persistent', value: (m) => yesNo(m.persistent) },
      { label: 'Routing key', value: (m) => m.routing_key },
      { label: 'Published', value: (m) => fmtTime(m.published_at) },
      { label: 'Size', num: true, value: (m) => m.size, format: fmtBytes },
    ],
  });
  const moves = dataTable({
    label: 'Redrive tasks',
    empty: 'No redrive tasks.',
    columns: [
      { label: 'Task', value: (t) => t.id },
      { label: 'Destination', value: (t) => t.destination ?? 'source queues' },
      { label: 'Status', value: (t) => t.status },
      { label: 'Moved', num: true, value: (t) => `${fmtInt(t.moved)} / ${fmtInt(t.to_move)}` },
      { label: 'Rate', num: true, value: (t) => (missing(t.rate) ? 'unlimited' : `${fmtRate(t.rate)}/s`) },
    ],
  });

  const peekForm = onSubmit(h('form', { class: 'form-row' },
    field('How many', h('input', { name: 'limit', type: 'number', min: 1, max: 100, value: 10 })),
    h('button', { type: 'submit' }, 'Peek')), async (data) => {
    peeked.show(await api('GET', `${path('messages')}?limit=${encodeURIComponent(data.get('limit'))}`));
  });

  const publishForm = onSubmit(h('form', { class: 'form-stack' },
    field('Message body', h('textarea', { name: 'body', rows: 3 })),
    checkbox('Persistent', 'persistent', true),
    h('div', {}, h('button', { type: 'submit', class: 'primary' }, 'Publish'))), async (data) => {
    await api('POST', path('messages'), { body: data.get('body'), persistent: data.has('persistent') });
    notify('info', `Message published to ${name}.`);
    await poll();
  });

  const redriveForm = onSubmit(h('form', { class: 'form-row' },
    field('Destination queue', h('input', { name: 'destination', autocomplete: 'off', placeholder: 'source queue' })),
    field('Rate (messages/s)', h('input', { name: 'rate', type: 'number', min: 1, placeholder: 'unlimited' })),
    h('button', { type: 'submit' }, 'Redrive')), async (data) => {
    const body = {};
    if (data.get('destination').trim()) body.destination = data.get('destination').trim();
    if (data.get('rate')) body.rate = Number(data.get('rate'));
    await api('POST', path('redrive'), body);
    notify('info', `Redrive of ${name} started.`);
    await poll();
  });

  const purge = actionButton('Purge', async () => {
    const ok = await confirmAction({
      title: `Purge ${name}?`,
      text: `This deletes every ready message of ${name} in namespace ${ns}. Unacked messages are kept.`,
      action: 'Purge',
    });
    if (!ok) return;
    const { purged } = await api('DELETE', path('contents'));
    notify('info', `Purged ${fmtInt(purged)} messages from ${name}.`);
    await poll();
  }, { class: 'danger' });

  const remove = actionButton('Delete queue', async () => {
    const ok = await confirmAction({
      title: `Delete ${name}?`,
      text: `This deletes queue ${name} in namespace ${ns} with all its messages.`,
      action: 'Delete',
    });
    if (!ok) return;
    const { messages } = await api('DELETE', path());
    notify('info', `Queue ${name} deleted with ${fmtInt(messages)} messages.`);
    location.hash = '#/queues';
  }, { class: 'danger' });

  main.append(
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/queues' }, 'Queues'), ` › ${ns}`),
    h('div', { class: 'title-row' }, h('h1', {}, name), tags, h('span', { class: 'actions' }, purge, remove)),
    numbers,
    h('div', { class: 'charts' }, h('div', { class: 'card' }, depth.el), h('div', { class: 'card' }, rates.el)),
    h('div', { class: 'columns' }, section('Counts since the queue was loaded', counts), section('Settings', settings)),
    section('Consumers', consumers.el),
    section('Bindings', bindings.el),
    section('Peek', h('p', { class: 'muted' }, 'Shows the oldest ready messages without consuming them.'), peekForm, peeked.el),
    section('Publish a test message', publishForm),
    section('Redrive', h('p', { class: 'muted' },
      'Moves the messages now in this queue (typically a dead-letter queue) back to the queue each came from, or to the destination queue given.'),
      redriveForm, moves.el),
  );

  function showQueue(q) {
    const t = Date.now();
    history.push({ t, ...q.messages, ...q.rates });
    while (history.length && history[0].t < t - QUEUE_SPAN_MS) history.shift();
    tags.replaceChildren(...queueType(q).map((text) => tag(text)));
    numbers.replaceChildren(stats([
      ['Ready', fmtInt(q.messages.ready)],
      ['Unacked', fmtInt(q.messages.unacked)],
      ['Delayed', fmtInt(q.messages.delayed)],
      ['Consumers', fmtInt(q.consumers)],
      ['Size', fmtBytes(q.messages.bytes)],
    ]));
    depth.draw(seriesOf(history, [['Ready', 'ready'], ['Unacked', 'unacked']]));
    rates.draw(seriesOf(history, [['Published', 'published'], ['Delivered', 'delivered'], ['Acked', 'acked']]));
    counts.replaceChildren(stats(COUNTS.map((key) => [capitalize(key.replace('_', ' ')), fmtInt(q.counts[key])])));
    const pairs = [['Namespace', ns], ['Dead letters', deadLetterText(q.dead_letter)], ...Object.entries(q.attributes || {})];
    settings.replaceChildren(h('dl', { class: 'pairs' }, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))])));
  }

  return {
    refresh: () => allParts([
      api('GET', path()).then(showQueue),
      api('GET', apiPath('consumers')).then((all) => consumers.show(all.filter((c) => c.namespace === ns && c.queue === name))),
      api('GET', path('bindings')).then(bindings.show),
      api('GET', path('redrive')).then(moves.show),
    ]),
  };
}

function routersPage(main) {
  const table = dataTable({
    label: 'Routers',
    sortable: true,
    sortBy: 1,
    empty: 'No routers.',
    columns: [
      { label: 'Namespace', value: (r) => r.namespace },
      { label: 'Name', value: (r) => r.name, cell: (r) => h('a', { href: routerHref(r.namespace, r.name) }, r.name) },
      { label: 'Kind', value: (r) => r.kind },
      { label: 'Durable', value: (r) => yesNo(r.durable) },
      { label: 'Internal', value: (r) => yesNo(r.internal) },
      { label: 'Bindings', num: true, value: (r) => r.bindings, format: fmtInt },
    ],
  });
  const form = onSubmit(h('form', { class: 'form-row' },
    field('Namespace', namespaceSelect()),
    field('Name', h('input', { name: 'name', required: true, autocomplete: 'off' })),
    field('Kind', h('select', { name: 'kind' }, ['direct', 'fanout', 'topic', 'headers'].map((k) => h('option', {}, k)))),
    checkbox('Durable', 'durable', true),
    h('button', { type: 'submit', class: 'primary' }, 'Declare router')), async (data) => {
    const name = data.get('name').trim();
    await api('PUT', apiPath('routers', data.get('namespace'), name), { kind: data.get('kind'), durable: data.has('durable') });
    notify('info', `Router ${name} declared.`);
    form.reset();
    await poll();
  });

  main.append(h('h1', {}, 'Routers'), table.el, section('Declare a router', form));
  return {
    async refresh() { table.show(await api('GET', apiPath('routers'))); },
  };
}

function routerPage(main, ns, name) {
  const path = (...rest) => apiPath('routers', ns, name, ...rest);
  const details = h('div');

  // A binding leads to a queue or to another router.
  const target = (b) => (b.queue !== undefined ? ['queue', b.queue] : ['router', b.router]);

  const unbind = (b) => {
    const [kind, destination] = target(b);
    return actionButton('Unbind', async () => {
      await api('DELETE', path('bindings'), { [kind]: destination, key: b.key, arguments: b.arguments });
      notify('info', 'Binding removed.');
      await poll();
    }, { class: 'small', 'aria-label': `Unbind ${kind} ${destination} with key ${b.key}` });
  };

  const bindings = dataTable({
    label: 'Bindings',
    empty: 'No bindings.',
    columns: [
      { label: 'To', value: (b) => target(b)[0] },
      {
        label: 'Destination',
        value: (b) => target(b)[1],
        cell: (b) => {
          const [kind, destination] = target(b);
          return h('a', { href: (kind === 'queue' ? queueHref : routerHref)(ns, destination) }, destination);
        },
      },
      { label: 'Routing key', value: (b) => b.key },
      { label: 'Arguments', value: (b) => fmtJson(b.arguments) },
      { label: 'Action', value: () => '', cell: unbind },
    ],
  });

  const bindForm = onSubmit(h('form', { class: 'form-row' },
    field('To', h('select', { name: 'to' }, h('option', { value: 'queue' }, 'queue'), h('option', { value: 'router' }, 'router'))),
    field('Destination', h('input', { name: 'destination', required: true, autocomplete: 'off' })),
    field('Routing key', h('input', { name: 'key', autocomplete: 'off' })),
    field('Arguments (JSON)', h('input', { name: 'arguments', placeholder: '{}', autocomplete: 'off' })),
    h('button', { type: 'submit', class: 'primary' }, 'Bind')), async (data) => {
    let args = {};
    try {
      if (data.get('arguments').trim()) args = JSON.parse(data.get('arguments'));
    } catch {
      throw new ApiError(0, 'The arguments are not valid JSON.');
    }
    await api('POST', path('bindings'), { [data.get('to')]: data.get('destination').trim(), key: data.get('key'), arguments: args });
    notify('info', 'Binding added.');
    bindForm.reset();
    await poll();
  });

  const remove = actionButton('Delete router', async () => {
    const ok = await confirmAction({
      title: `Delete ${name}?`,
      text: `This deletes router ${name} in namespace ${ns} and its bindings.`,
      action: 'Delete',
    });
    if (!ok) return;
    await api('DELETE', path());
    notify('info', `Router ${name} deleted.`);
    location.hash = '#/routers';
  }, { class: 'danger' });

  main.append(
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/routers' }, 'Routers'), ` › ${ns}`),
    h('div', { class: 'title-row' }, h('h1', {}, name), h('span', { class: 'actions' }, remove)),
    details,
    section('Bindings', bindings.el),
    section('Add a binding', bindForm));

  return {
    async refresh() {
      const r = await api('GET', path());
      details.replaceChildren(stats([
        ['Kind', r.kind],
        ['Durable', yesNo(r.durable)],
        ['Internal', yesNo(r.internal)],
        ['Alternate', r.alternate || 'none'],
      ]));
      bindings.show(r.bindings);
    },
  };
}

function streamsPage(main) {
  const streams = dataTable({
    label: 'Streams',
    sortable: true,
    sortBy: 1,
    empty: 'No streams. Kafka clients make them (or the CLI: ferry streams create).',
    columns: [
      { label: 'Namespace', value: (s) => s.namespace },
      { label: 'Name', value: (s) => s.name },
      { label: 'Partitions', num: true, value: (s) => s.partitions.length, format: fmtInt },
      { label: 'Records', num: true, value: (s) => s.records, format: fmtInt },
      { label: 'Size', num: true, value: (s) => s.bytes, format: fmtBytes },
    ],
  });
  const groups = dataTable({
    label: 'Consumer groups',
    sortable: true,
    sortBy: 1,
    empty: 'No consumer groups.',
    columns: [
      { label: 'Namespace', value: (g) => g.namespace },
      { label: 'Group', value: (g) => g.group },
      { label: 'State', value: (g) => g.state },
      { label: 'Members', num: true, value: (g) => g.members, format: fmtInt },
      // Records past the group's commits, over its partitions.
      { label: 'Lag', num: true, value: (g) => g.lag, format: fmtInt },
    ],
  });
  main.append(h('h1', {}, 'Streams'), streams.el, section('Consumer groups', groups.el));
  return {
    async refresh() {
      await allParts([
        api('GET', apiPath('streams')).then((rows) => streams.show(rows)),
        api('GET', apiPath('groups')).then((rows) => groups.show(rows)),
      ]);
    },
  };
}

function connectionsPage(main) {
  const close = (c) => actionButton('Close', async () => {
    const ok = await confirmAction({
      title: `Close connection ${c.id}?`,
      text: `The ${c.protocol} client at ${c.peer} (user ${c.user}) is told in its protocol and disconnected (AMQP: connection.close 320 CONNECTION_FORCED).`,
      action: 'Close connection',
    });
    if (!ok) return;
    await api('DELETE', apiPath('connections', c.id));
    notify('info', `Connection ${c.id} closed.`);
    await poll();
  }, { class: 'small danger', 'aria-label': `Close connection ${c.id}` });

  const table = dataTable({
    label: 'Connections',
    sortable: true,
    empty: 'No open connections.',
    columns: [
      { label: 'ID', value: (c) => c.id },
      { label: 'Protocol', value: (c) => c.protocol },
      { label: 'Peer', value: (c) => c.peer },
      { label: 'User', value: (c) => c.user },
      { label: 'Namespace', value: (c) => c.namespace },
      { label: 'Age', num: true, value: (c) => (Date.now() - c.connected_at) / 1000, format: fmtDuration },
      { label: 'Channels', num: true, value: (c) => c.channels, format: fmtInt },
      { label: 'Consumers', num: true, value: (c) => c.consumers, format: fmtInt },
      { label: 'Received', num: true, value: (c) => c.recv_bytes, format: fmtBytes },
      { label: 'Sent', num: true, value: (c) => c.sent_bytes, format: fmtBytes },
      { label: 'In/s', num: true, value: (c) => c.recv_rate, format: (n) => `${fmtBytes(n)}/s` },
      { label: 'Out/s', num: true, value: (c) => c.sent_rate, format: (n) => `${fmtBytes(n)}/s` },
      { label: 'Msgs in/s', num: true, value: (c) => c.recv_message_rate, format: fmtRate },
      { label: 'Msgs out/s', num: true, value: (c) => c.sent_message_rate, format: fmtRate },
      { label: 'Action', sortable: false, value: () => '', cell: close },
    ],
  });
  main.append(h('h1', {}, 'Connections'),
    h('p', { class: 'muted' }, 'Open connections of every face. SQS and the other HTTP protocols are connectionless.'),
    table.el);
  return {
    async refresh() { table.show(await api('GET', apiPath('connections'))); },
  };
}

function usersPage(main) {
  const users = dataTable({
    label: 'Users',
    sortable: true,
    empty: 'No users.',
    columns: [
      { label: 'Name', value: (u) => u.name },
      { label: 'Tags', value: (u) => u.tags.join(' '), cell: (u) => u.tags.map((t) => tag(t)) },
      { label: 'Loopback only', value: (u) => yesNo(u.loopback_only) },
    ],
  });
  const regex = (key) => ({ label: capitalize(key), value: (p) => p[key], cell: (p) => h('code', {}, p[key]) });
  const permissions = dataTable({
    label: 'Permissions',
    sortable: true,
    empty: 'No permissions.',
    columns: [
      { label: 'User', value: (p) => p.user },
      { label: 'Namespace', value: (p) => p.namespace },
      regex('configure'), regex('write'), regex('read'),
    ],
  });
  main.append(h('h1', {}, 'Users'),
    users.el,
    section('Permissions', h('p', { class: 'muted' }, 'Regular expressions over the names a user may configure, write to and read from.'),
      permissions.el));
  return {
    refresh: () => allParts([
      api('GET', apiPath('users')).then(users.show),
      api('GET', apiPath('permissions')).then(permissions.show),
    ]),
  };
}

function notFoundPage(main) {
  main.append(h('h1', {}, 'Not found'), h('p', {}, 'There is no such page. ', h('a', { href: '#/' }, 'Go to the overview.')));
  return { async refresh() {} };
}

// ---- Routing ----------------------------------------------------------------------
// Hash routes; names are URL-encoded segments, as in the API.

const routes = [
  [/^\/$/, overviewPage],
  [/^\/queues$/, queuesPage],
  [/^\/queues\/([^/]+)\/([^/]+)$/, queuePage],
  [/^\/routers$/, routersPage],
  [/^\/routers\/([^/]+)\/([^/]+)$/, routerPage],
  [/^\/streams$/, streamsPage],
  [/^\/connections$/, connectionsPage],
  [/^\/users$/, usersPage],
];

function navigate() {
  const path = location.hash.slice(1) || '/';
  let page = notFoundPage;
  let args = [];
  for (const [pattern, pageFor] of routes) {
    const m = path.match(pattern);
    if (!m) continue;
    try {
      args = m.slice(1).map(decodeURIComponent);
      page = pageFor;
    } catch { /* a malformed %-escape: not found */ }
    break;
  }
  for (const link of document.querySelectorAll('#nav a')) {
    const section = link.getAttribute('href').slice(1);
    const active = section === '/' ? path === '/' : path === section || path.startsWith(`${section}/`);
    if (active) link.setAttribute('aria-current', 'page'); else link.removeAttribute('aria-current');
  }
  // Errors belong to the page they came from; confirmations may outlive it.
  for (const n of document.querySelectorAll('#notices .notice-error')) n.remove();
  dismissed.clear();
  closeMenu();
  const main = $('#page');
  main.replaceChildren();
  currentPage = page(main, ...args);
  document.title = `${main.querySelector('h1').textContent} · ferry`;
  poll();
}

// ---- Login and start --------------------------------------------------------------

function showLogin(message) {
  session.clear();
  clearTimeout(pollTimer);
  pollRound += 1; // a round in flight must not schedule another
  overview.history = [];
  $('#app').hidden = true;
  $('#login').hidden = false;
  $('#notices').replaceChildren();
  const error = $('#login-error');
  error.hidden = !message;
  error.textContent = message || '';
  document.title = 'Log in · ferry';
  $('#login-form [name=user]').focus();
}

function showApp() {
  $('#login').hidden = true;
  $('#app').hidden = false;
  $('#session-user').textContent = session.load().user;
  navigate();
}

onSubmit($('#login-form'), async (data) => {
  const user = data.get('user');
  const token = basicToken(user, data.get('password'));
  try {
    await request(token, 'GET', apiPath('overview'));
  } catch (e) {
    const error = $('#login-error');
    error.hidden = false;
    error.textContent = e.status === 401 ? 'Login refused: wrong user name or password, or this user may not log in from here.'
      : e.status === 403 ? `Login refused: ${e.message}` : e.message;
    return;
  }
  session.save({ user, token });
  $('#login-form').reset();
  showApp();
});

function closeMenu() {
  $('#nav').classList.remove('open');
  $('#menu-button').setAttribute('aria-expanded', 'false');
}

$('#menu-button').addEventListener('click', () => {
  const open = $('#nav').classList.toggle('open');
  $('#menu-button').setAttribute('aria-expanded', String(open));
});
$('#logout').addEventListener('click', () => showLogin());
window.addEventListener('hashchange', () => { if (session.load()) navigate(); });

if (session.load()) showApp(); else showLogin();
