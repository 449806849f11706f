//! Cross-protocol tests: scenarios run over every ordered combination of
//! ferry's faces (same-face ones included), against a real `ferry serve`
//! on loopback ports.
//!
//! A scenario names roles (declarer, publisher, consumer, ...); the matrix
//! runs it once for every assignment of faces to roles, each run with its
//! own queues and its own client connections, all runs at once. A role a
//! face cannot play (an AMQP FIFO queue, an SQS reject) skips that run;
//! the table printed at the end (`--nocapture`) says which and why.
//!
//! What a delivery must look like comes from the documented mapping
//! (docs/protocol-mapping.md), written as each face's model in
//! cross_protocol/{amqp,sqs}.rs: the publisher's rows make a core message,
//! the consumer's view of it is what its client must show — every key,
//! nothing more (a field a face loses is checked by its absence). Each doc
//! row's id is in the model or in [`SCENARIO_ROWS`], and
//! `every_documented_row_is_checked` keeps the two in step.
//!
//! A new face: implement [`face::Face`] for it and add it to [`faces`].
//!
//! `CROSS_PROTOCOL_DUMP=1` prints every delivery's view as it is checked.

#[path = "cross_protocol/amqp.rs"]
mod amqp;
mod common;
#[path = "cross_protocol/face.rs"]
mod face;
#[path = "cross_protocol/sqs.rs"]
mod sqs;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::{Death, DeathReason, Message, Timestamp};

use face::{
    DeadLetterSpec, Depth, Face, Facts, QueueSpec, Received, TestMessage, Unsupported, now_ms,
};

/// The longest any single client operation or expected delivery may take.
const WAIT: Duration = Duration::from_secs(10);
/// Between two polls of a queue.
const POLL: Duration = Duration::from_millis(10);
/// The delays and TTLs of the delay scenarios (SQS delays are whole seconds).
const DELAY: Duration = Duration::from_secs(2);
/// Receives before a receive-limited queue dead-letters a message.
const RECEIVES: u32 = 2;
/// The longest a whole run of one combination may take.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Rows of docs/protocol-mapping.md that scenarios check (the mapping rows
/// are the faces' own: [`Face::row_ids`]).
const SCENARIO_ROWS: &[&str] = &[
    "dlq.redrive",
    "dlq.keeps-id",
    "dlq.reject",
    "dlq.reject-limited-queue",
    "delay.message",
    "delay.queue",
    "delay.ttl-dlx",
    "delay.expiration-dlx",
    "ack.in-flight",
    "ack.requeue",
    "ack.gone",
    "fifo.dedup",
    "fifo.no-group",
];

/// Every face, in matrix order. The one place a new face is added.
async fn faces(ferry: &common::Ferry) -> Faces {
    vec![
        Box::new(amqp::AmqpFace::connect(ferry).await),
        Box::new(sqs::SqsFace::new(ferry)),
    ]
}

type Faces = Vec<Box<dyn Face>>;

/// Listeners the faces need.
const LISTENERS: &[&str] = &["aws", "amqp"];

/// `f`, or a failed test once [`WAIT`] has passed.
pub async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {WAIT:?}"))
}

struct Env {
    ferry: common::Ferry,
    _dir: tempfile::TempDir,
}

fn start() -> Arc<Env> {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = common::Ferry::start(dir.path(), LISTENERS, &[]);
    Arc::new(Env { ferry, _dir: dir })
}

/// How one run of a scenario ended (a failure is a panic).
enum Outcome {
    Ran,
    Skipped(Unsupported),
}

/// The value of a face call, or a skipped run if the face cannot do it.
macro_rules! need {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(u) => return Outcome::Skipped(u),
        }
    };
}

/// Runs `run` for every assignment of faces to `roles`, all at once, then
/// fails with every failed run's message.
async fn matrix<F, Fu>(scenario: &'static str, roles: &[&str], run: F)
where
    F: Fn(Faces, Vec<usize>, String) -> Fu + Send + Sync + 'static,
    Fu: Future<Output = Outcome> + Send + 'static,
{
    let env = start();
    let names: Vec<&'static str> = faces(&env.ferry).await.iter().map(|f| f.name()).collect();
    let mut combos: Vec<Vec<usize>> = vec![vec![]];
    for _ in roles {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                (0..names.len()).map(move |i| {
                    let mut c = c.clone();
                    c.push(i);
                    c
                })
            })
            .collect();
    }
    let run = Arc::new(run);
    let mut runs = Vec::new();
    for combo in combos {
        let label = combo
            .iter()
            .map(|&i| names[i])
            .collect::<Vec<_>>()
            .join("-");
        let (env, run) = (Arc::clone(&env), Arc::clone(&run));
        let prefix = format!("{scenario}-{label}");
        let task = tokio::spawn(async move {
            let faces = faces(&env.ferry).await;
            tokio::time::timeout(RUN_LIMIT, run(faces, combo, prefix)).await
        });
        runs.push((label, task));
    }
    let mut table = Vec::new();
    let mut failed = Vec::new();
    let mut ran: BTreeSet<&str> = BTreeSet::new();
    for (label, task) in runs {
        let line = match task.await {
            Ok(Ok(Outcome::Ran)) => {
                ran.extend(
                    label
                        .split('-')
                        .filter_map(|n| names.iter().find(|x| **x == n)),
                );
                "ran".to_owned()
            }
            Ok(Ok(Outcome::Skipped(why))) => format!("skipped: {why}"),
            Ok(Err(_)) => {
                failed.push(format!("{label}: did not finish within {RUN_LIMIT:?}"));
                "FAILED (too slow)".to_owned()
            }
            Err(e) => {
                let why = match e.try_into_panic() {
                    Ok(p) => p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_else(|| "panicked".to_owned()),
                    Err(e) => e.to_string(),
                };
                failed.push(format!("{label}: {why}"));
                "FAILED".to_owned()
            }
        };
        table.push(format!("  {label:<28} {line}"));
    }
    println!("{scenario} ({}):\n{}", roles.join(", "), table.join("\n"));
    assert!(
        failed.is_empty(),
        "{scenario}: {} of {} runs failed:\n{}",
        failed.len(),
        table.len(),
        failed.join("\n\n")
    );
    for n in &names {
        assert!(
            ran.contains(n),
            "{scenario}: no run with face {n} took place:\n{}",
            table.join("\n")
        );
    }
}

/// Polls `queue` on `face` until a message comes or `within` passes.
async fn receive_within(face: &dyn Face, queue: &str, within: Duration) -> Option<Received> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(r) = face.try_receive(queue).await {
            return Some(r);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn must_receive(face: &dyn Face, queue: &str, within: Duration, row: &str) -> Received {
    receive_within(face, queue, within)
        .await
        .unwrap_or_else(|| {
            panic!(
                "{row}: nothing delivered from {queue} on {} within {within:?}",
                face.name()
            )
        })
}

/// Nothing in `queue` for any face: no receive gets anything, and every
/// face that counts says it is empty.
async fn assert_gone(faces: &Faces, queue: &str, row: &str) {
    for f in faces {
        if let Some(r) = f.try_receive(queue).await {
            panic!(
                "{row}: {} still received from {queue}: {:?}",
                f.name(),
                String::from_utf8_lossy(&r.body)
            );
        }
        let d = f.depth(queue).await;
        let empty = Depth {
            ready: 0,
            in_flight: d.in_flight.map(|_| 0),
            delayed: d.delayed.map(|_| 0),
        };
        assert_eq!(d, empty, "{row}: depth of {queue} on {}", f.name());
    }
}

/// The documented mapping applied to one message: the publisher's rows,
/// then what happened to it in the broker.
struct Model<'a> {
    publisher: &'a dyn Face,
    msg: TestMessage,
    queue: String,
    steps: Vec<Step<'a>>,
}

/// Something that happened to a message in the broker, as the model has it.
type Step<'a> = Box<dyn Fn(&mut Message) + Send + Sync + 'a>;

impl<'a> Model<'a> {
    fn new(publisher: &'a dyn Face, msg: &TestMessage, queue: &str) -> Model<'a> {
        Model {
            publisher,
            msg: msg.clone(),
            queue: queue.to_owned(),
            steps: Vec::new(),
        }
    }

    /// The queue deduplicates by content: the message carries the id it
    /// was deduplicated by (row `fifo.dedup`).
    fn content_deduplicated(&mut self) {
        self.steps.push(Box::new(|m: &mut Message| {
            if m.dedup_id.is_none() {
                m.dedup_id = Some(ferry_core::queue::content_dedup_id(&m.body));
            }
        }));
    }

    /// The core message, without row `skip`'s effect if given.
    fn core(&self, skip: Option<&str>) -> Message {
        let mut m = Message::new(self.msg.body.clone());
        for e in self.publisher.model_publish(&self.msg, &self.queue) {
            if Some(e.row) != skip {
                (e.apply)(&mut m);
            }
        }
        for step in &self.steps {
            step(&mut m);
        }
        m
    }

    fn rows(&self) -> Vec<&'static str> {
        self.publisher
            .model_publish(&self.msg, &self.queue)
            .iter()
            .map(|e| e.row)
            .collect()
    }

    /// Dead-lettered from `source`, a queue `declarer` declared with
    /// `spec`: the death is recorded as RabbitMQ's x-death counts it, the
    /// TTL and delay are dropped, and the declaring face's own rule applies.
    fn died(
        &mut self,
        declarer: &'a dyn Face,
        source: &str,
        reason: DeathReason,
        spec: DeadLetterSpec,
    ) {
        let source = source.to_owned();
        self.steps.push(Box::new(move |m: &mut Message| {
            let original_ttl = m.properties.ttl.take();
            m.properties.delay = None;
            let prior = m
                .deaths
                .iter()
                .position(|d| d.queue == source && d.reason == reason);
            let death = match prior {
                Some(i) => {
                    let mut d = m.deaths.remove(i);
                    d.count += 1;
                    d.original_ttl = original_ttl.or(d.original_ttl);
                    d
                }
                None => Death {
                    queue: source.clone(),
                    reason,
                    count: 1,
                    first_time: Timestamp(0),
                    last_time: Timestamp(0),
                    router: m.router.clone(),
                    routing_key: m.routing_key.clone(),
                    original_ttl,
                },
            };
            m.deaths.insert(0, death);
            declarer.model_dead_letter(m, &spec);
        }));
    }
}

fn facts(queue: &str, count: u32, id: Option<String>, since_ms: u64) -> Facts {
    Facts {
        queue: queue.to_owned(),
        fifo: queue.ends_with(".fifo"),
        count,
        id,
        window: (since_ms, now_ms()),
    }
}

fn show(b: &[u8]) -> String {
    if b.len() > 64 {
        format!(
            "{} bytes starting {:?}",
            b.len(),
            String::from_utf8_lossy(&b[..32])
        )
    } else {
        format!("{:?}", String::from_utf8_lossy(b))
    }
}

/// Checks delivery `got` on `consumer` against the model: the body, then
/// every key of the view. A mismatch names the doc rows behind the key: the
/// consumer's own row, or the publisher rows whose removal changes it.
fn check(consumer: &dyn Face, model: &Model<'_>, f: &Facts, got: &Received, what: &str) {
    let core = model.core(None);
    let expected = consumer.expect_view(&core, f);
    if std::env::var_os("CROSS_PROTOCOL_DUMP").is_some() {
        eprintln!(
            "DUMP {what} {} -> {} {}: {:#?}",
            model.publisher.name(),
            consumer.name(),
            f.queue,
            got.view
        );
    }
    let mut rows_of: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let rows = model.rows();
    for row in &rows {
        let alt = consumer.expect_view(&model.core(Some(row)), f);
        let keys: BTreeSet<&String> = expected.keys().chain(alt.keys()).collect();
        for k in keys {
            if expected.get(k).map(|e| &e.0) != alt.get(k).map(|e| &e.0) {
                rows_of.entry(k.clone()).or_default().push(row);
            }
        }
    }
    let lost: Vec<&str> = rows
        .iter()
        .filter(|r| !rows_of.values().any(|v| v.contains(r)))
        .copied()
        .collect();
    let mut errors = Vec::new();
    let body = consumer.expect_body(&core.body);
    if got.body != body {
        errors.push(format!(
            "  body: expected {}, got {}",
            show(&body),
            show(&got.body)
        ));
    }
    let keys: BTreeSet<&String> = expected.keys().chain(got.view.keys()).collect();
    for k in keys {
        let rows = match expected.get(k) {
            Some((_, Some(row))) => (*row).to_owned(),
            _ => rows_of
                .get(k)
                .map_or_else(|| "a core default".to_owned(), |r| r.join(", ")),
        };
        match (expected.get(k), got.view.get(k)) {
            (Some((e, _)), Some(a)) if e.matches(a) => {}
            (Some((e, _)), a) => {
                errors.push(format!("  {k} [{rows}]: expected {e:?}, got {a:?}"));
            }
            (None, Some(a)) => errors.push(format!(
                "  {k}: not in the documented mapping, got {a:?} (rows documented as lost here: {})",
                lost.join(", ")
            )),
            (None, None) => {}
        }
    }
    assert!(
        errors.is_empty(),
        "{what}: {} -> {} ({}, delivery {}) differs from docs/protocol-mapping.md:\n{}",
        model.publisher.name(),
        consumer.name(),
        f.queue,
        f.count,
        errors.join("\n")
    );
}

/// A fresh receive on every face finds nothing in `queue` yet, and the
/// faces that count delayed messages count it.
async fn assert_not_yet(faces: &Faces, queue: &str, delayed: bool, since: Instant, row: &str) {
    for f in faces {
        if let Some(r) = f.try_receive(queue).await {
            panic!(
                "{row}: {} received {:?} from {queue} {:?} after the publish, before its delay",
                f.name(),
                String::from_utf8_lossy(&r.body),
                since.elapsed()
            );
        }
        let d = f.depth(queue).await;
        assert_eq!(d.ready, 0, "{row}: ready in {queue} on {}", f.name());
        if delayed && let Some(n) = d.delayed {
            assert_eq!(n, 1, "{row}: delayed in {queue} on {}", f.name());
        }
    }
    assert!(
        since.elapsed() < DELAY,
        "{row}: the early receives took {:?}: too slow to show anything",
        since.elapsed()
    );
}

/// The delivery of a delayed message came no earlier than `delay` after
/// the publish began, by the test's clock and by the broker's stamps.
fn assert_on_time(consumer: &dyn Face, got: &Received, since: Instant, delay: Duration, row: &str) {
    // The broker's clock counts whole milliseconds.
    let slack = Duration::from_millis(2);
    let waited = since.elapsed();
    assert!(
        waited + slack >= delay,
        "{row}: delivered on {} after {waited:?}, before the {delay:?} delay",
        consumer.name()
    );
    if let Some(ms) = consumer.visible_after_ms(got) {
        assert!(
            ms >= delay.as_millis() as u64,
            "{row}: {} shows it first received {ms} ms after it was sent",
            consumer.name()
        );
    }
}

// Metadata.

/// Roles: declarer, publisher, consumer. The publisher's rich message (each
/// of its metadata rows) on a plain queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_maps_as_documented() {
    matrix(
        "md",
        &["declarer", "publisher", "consumer"],
        |faces, ix, q| metadata(faces, ix, q, false),
    )
    .await;
}

/// The same on a FIFO queue: SQS group, deduplication id and sequence
/// number; an AMQP publish has no group (`fifo.no-group`: the SQS view of
/// it has no `Attributes.MessageGroupId`, by the exhaustive comparison).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_maps_as_documented_on_fifo_queues() {
    matrix(
        "mdfifo",
        &["declarer", "publisher", "consumer"],
        |faces, ix, q| metadata(faces, ix, format!("{q}.fifo"), true),
    )
    .await;
}

async fn metadata(faces: Faces, ix: Vec<usize>, q: String, fifo: bool) -> Outcome {
    let (d, p, c) = (&*faces[ix[0]], &*faces[ix[1]], &*faces[ix[2]]);
    let spec = QueueSpec {
        fifo,
        ..QueueSpec::plain(&q)
    };
    need!(d.declare(&spec).await);
    let since = now_ms();
    let m = TestMessage::rich("rich body \u{e9}");
    let sent = need!(p.publish(&q, &m).await);
    // Received at once: an `x-delay` header delays nothing.
    let got = must_receive(c, &q, WAIT, "metadata").await;
    let f = facts(&q, 1, sent.id, since);
    check(c, &Model::new(p, &m, &q), &f, &got, "metadata");
    c.ack(&got).await;
    Outcome::Ran
}

/// Roles: publisher, consumer (which declares the queue). Every body the
/// publisher can send (`body.*`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_map_as_documented() {
    matrix(
        "body",
        &["publisher", "consumer"],
        |faces, ix, q| async move {
            let (p, c) = (&*faces[ix[0]], &*faces[ix[1]]);
            need!(c.declare(&QueueSpec::plain(&q)).await);
            for (row, body) in p.bodies() {
                let since = now_ms();
                let m = TestMessage {
                    body,
                    ..TestMessage::default()
                };
                let sent = need!(p.publish(&q, &m).await);
                let got = must_receive(c, &q, WAIT, row).await;
                check(
                    c,
                    &Model::new(p, &m, &q),
                    &facts(&q, 1, sent.id, since),
                    &got,
                    row,
                );
                c.ack(&got).await;
            }
            Outcome::Ran
        },
    )
    .await;
}

// Dead letters.

/// Roles: declarer (of a queue dead-lettering after [`RECEIVES`]
/// receives, and of its dead-letter queue), publisher, consumer (who gives
/// the message back each time), dead-letter reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_limits_dead_letter_across_faces() {
    matrix(
        "redrive",
        &["declarer", "publisher", "consumer", "reader"],
        |faces, ix, src| async move {
            let (d, p, c, r) = (
                &*faces[ix[0]],
                &*faces[ix[1]],
                &*faces[ix[2]],
                &*faces[ix[3]],
            );
            let dlq = format!("{src}-dlq");
            need!(d.declare(&QueueSpec::plain(&dlq)).await);
            let spec = DeadLetterSpec {
                target: dlq.clone(),
                after_receives: Some(RECEIVES),
            };
            let source = QueueSpec {
                dead_letter: Some(spec.clone()),
                ..QueueSpec::plain(&src)
            };
            need!(d.declare(&source).await);
            let since = now_ms();
            let m = TestMessage::rich("poison");
            let mut id = need!(p.publish(&src, &m).await).id;
            let mut model = Model::new(p, &m, &src);
            for count in 1..=RECEIVES {
                let got = must_receive(c, &src, WAIT, "dlq.redrive").await;
                let what = format!("dlq.redrive: receive {count}");
                check(
                    c,
                    &model,
                    &facts(&src, count, id.clone(), since),
                    &got,
                    &what,
                );
                id = id.or(got.id.clone());
                c.requeue(&got).await;
            }
            let dead = must_receive(r, &dlq, WAIT, "dlq.redrive").await;
            if let (Some(a), Some(b)) = (&id, &dead.id) {
                assert_eq!(a, b, "dlq.keeps-id: the message id in {dlq}");
            }
            model.died(d, &src, DeathReason::DeliveryLimit, spec);
            let f = facts(&dlq, 1, id, since);
            check(r, &model, &f, &dead, "dlq.redrive: the dead letter");
            r.ack(&dead).await;
            assert_gone(&faces, &src, "dlq.redrive").await;
            assert_gone(&faces, &dlq, "dlq.redrive").await;
            Outcome::Ran
        },
    )
    .await;
}

/// Roles: declarer (of a queue dead-lettering what is rejected), publisher,
/// rejecting consumer, dead-letter reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_dead_letter_across_faces() {
    matrix(
        "reject",
        &["declarer", "publisher", "consumer", "reader"],
        |faces, ix, src| reject(faces, ix, src, None),
    )
    .await;
}

/// The same on a queue that dead-letters after [`RECEIVES`] receives
/// (`dlq.reject-limited-queue`): an SQS redrive queue drops a rejected
/// message instead; an AMQP quorum queue with a dead-letter exchange
/// dead-letters it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_on_receive_limited_queues() {
    matrix(
        "rejlim",
        &["declarer", "publisher", "consumer", "reader"],
        |faces, ix, src| reject(faces, ix, src, Some(RECEIVES)),
    )
    .await;
}

async fn reject(faces: Faces, ix: Vec<usize>, src: String, limit: Option<u32>) -> Outcome {
    let (d, p, c, r) = (
        &*faces[ix[0]],
        &*faces[ix[1]],
        &*faces[ix[2]],
        &*faces[ix[3]],
    );
    let row = if limit.is_some() {
        "dlq.reject-limited-queue"
    } else {
        "dlq.reject"
    };
    let dlq = format!("{src}-dlq");
    need!(d.declare(&QueueSpec::plain(&dlq)).await);
    let spec = DeadLetterSpec {
        target: dlq.clone(),
        after_receives: limit,
    };
    let source = QueueSpec {
        dead_letter: Some(spec.clone()),
        ..QueueSpec::plain(&src)
    };
    need!(d.declare(&source).await);
    let since = now_ms();
    let m = TestMessage::rich("unwanted");
    let sent = need!(p.publish(&src, &m).await);
    let mut model = Model::new(p, &m, &src);
    let got = must_receive(c, &src, WAIT, row).await;
    let id = sent.id.or(got.id.clone());
    check(c, &model, &facts(&src, 1, id.clone(), since), &got, row);
    need!(c.reject(&got).await);
    if limit.is_none() || d.dead_letters_rejects_on_limited_queue() {
        let dead = must_receive(r, &dlq, WAIT, row).await;
        model.died(d, &src, DeathReason::Rejected, spec);
        check(r, &model, &facts(&dlq, 1, id, since), &dead, row);
        r.ack(&dead).await;
    }
    // Either way nothing is left: the reject was applied before the
    // rejecting face's next answer.
    assert_gone(&faces, &src, row).await;
    assert_gone(&faces, &dlq, row).await;
    Outcome::Ran
}

// Delays.

/// Publishes `m` (delayed by [`DELAY`]) on `p` and checks that no face sees
/// it early, that `c` receives it on time and as the mapping says, and acks.
async fn arrives_after_delay(
    faces: &Faces,
    p: &dyn Face,
    c: &dyn Face,
    q: &str,
    m: &TestMessage,
    row: &str,
) -> Outcome {
    let (since, since_ms) = (Instant::now(), now_ms());
    let sent = need!(p.publish(q, m).await);
    assert_not_yet(faces, q, true, since, row).await;
    let got = must_receive(c, q, DELAY + WAIT, row).await;
    assert_on_time(c, &got, since, DELAY, row);
    check(
        c,
        &Model::new(p, m, q),
        &facts(q, 1, sent.id, since_ms),
        &got,
        row,
    );
    c.ack(&got).await;
    Outcome::Ran
}

/// Roles: publisher (with a per-message delay), consumer (who declares).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_delays_hold_across_faces() {
    matrix(
        "mdelay",
        &["publisher", "consumer"],
        |faces, ix, q| async move {
            let (p, c) = (&*faces[ix[0]], &*faces[ix[1]]);
            let row = "delay.message";
            need!(c.declare(&QueueSpec::plain(&q)).await);
            let m = TestMessage {
                delay: Some(DELAY),
                ..TestMessage::plain("later")
            };
            arrives_after_delay(&faces, p, c, &q, &m, row).await
        },
    )
    .await;
}

/// Roles: declarer (of a queue delaying every message), publisher, consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_delays_hold_across_faces() {
    matrix(
        "qdelay",
        &["declarer", "publisher", "consumer"],
        |faces, ix, q| async move {
            let (d, p, c) = (&*faces[ix[0]], &*faces[ix[1]], &*faces[ix[2]]);
            let row = "delay.queue";
            let spec = QueueSpec {
                delay: Some(DELAY),
                ..QueueSpec::plain(&q)
            };
            need!(d.declare(&spec).await);
            let m = TestMessage::rich("later");
            arrives_after_delay(&faces, p, c, &q, &m, row).await
        },
    )
    .await;
}

/// Roles: declarer (of a holding queue whose messages expire after
/// [`DELAY`] into a target queue), publisher, consumer of the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_dead_letter_delays_hold_across_faces() {
    matrix(
        "ttldlx",
        &["declarer", "publisher", "consumer"],
        |faces, ix, q| expiry_delay(faces, ix, q, false),
    )
    .await;
}

/// The same with the TTL on the message (AMQP `expiration`) instead of
/// the holding queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiration_dead_letter_delays_hold_across_faces() {
    matrix(
        "expdlx",
        &["declarer", "publisher", "consumer"],
        |faces, ix, q| expiry_delay(faces, ix, q, true),
    )
    .await;
}

async fn expiry_delay(faces: Faces, ix: Vec<usize>, q: String, per_message: bool) -> Outcome {
    let (d, p, c) = (&*faces[ix[0]], &*faces[ix[1]], &*faces[ix[2]]);
    let row = if per_message {
        "delay.expiration-dlx"
    } else {
        "delay.ttl-dlx"
    };
    let (holding, target) = (format!("{q}-wait"), q);
    need!(d.declare(&QueueSpec::plain(&target)).await);
    let spec = DeadLetterSpec {
        target: target.clone(),
        after_receives: None,
    };
    let wait = QueueSpec {
        ttl: (!per_message).then_some(DELAY),
        dead_letter: Some(spec.clone()),
        ..QueueSpec::plain(&holding)
    };
    need!(d.declare(&wait).await);
    let m = if per_message {
        TestMessage {
            ttl: Some(DELAY),
            ..TestMessage::plain("later")
        }
    } else {
        TestMessage::rich("later")
    };
    let (since, since_ms) = (Instant::now(), now_ms());
    let sent = need!(p.publish(&holding, &m).await);
    assert_not_yet(&faces, &target, false, since, row).await;
    for f in &faces {
        let n = f.depth(&holding).await.ready;
        assert_eq!(n, 1, "{row}: waiting in {holding} on {}", f.name());
    }
    let got = must_receive(c, &target, DELAY + WAIT, row).await;
    assert_on_time(c, &got, since, DELAY, row);
    let mut model = Model::new(p, &m, &holding);
    model.died(d, &holding, DeathReason::Expired, spec);
    check(c, &model, &facts(&target, 1, sent.id, since_ms), &got, row);
    c.ack(&got).await;
    assert_gone(&faces, &holding, row).await;
    assert_gone(&faces, &target, row).await;
    Outcome::Ran
}

// Settling.

/// Roles: publisher, first consumer (who declares, receives and gives the
/// message back), second consumer (who receives it again and acks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settling_on_one_face_is_seen_by_all() {
    matrix(
        "settle",
        &["publisher", "first", "second"],
        |faces, ix, q| async move {
            let (p, a, b) = (&*faces[ix[0]], &*faces[ix[1]], &*faces[ix[2]]);
            need!(a.declare(&QueueSpec::plain(&q)).await);
            let since = now_ms();
            let m = TestMessage::rich("once");
            let sent = need!(p.publish(&q, &m).await);
            let model = Model::new(p, &m, &q);
            let first = must_receive(a, &q, WAIT, "ack.in-flight").await;
            let id = sent.id.or(first.id.clone());
            check(
                a,
                &model,
                &facts(&q, 1, id.clone(), since),
                &first,
                "ack.in-flight",
            );
            for f in &faces {
                if f.try_receive(&q).await.is_some() {
                    panic!(
                        "ack.in-flight: {} received from {q} what {} holds",
                        f.name(),
                        a.name()
                    );
                }
                let d = f.depth(&q).await;
                assert_eq!(d.ready, 0, "ack.in-flight: ready on {}", f.name());
                if let Some(n) = d.in_flight {
                    assert_eq!(n, 1, "ack.in-flight: in flight on {}", f.name());
                }
            }
            a.requeue(&first).await;
            let again = must_receive(b, &q, WAIT, "ack.requeue").await;
            if let (Some(x), Some(y)) = (&id, &again.id) {
                assert_eq!(x, y, "ack.requeue: the same message id");
            }
            let id = id.or(again.id.clone());
            check(b, &model, &facts(&q, 2, id, since), &again, "ack.requeue");
            b.ack(&again).await;
            assert_gone(&faces, &q, "ack.gone").await;
            Outcome::Ran
        },
    )
    .await;
}

// FIFO.

/// Roles: declarer (of a FIFO queue deduplicating by content), first
/// publisher, second publisher (of the same body), consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_deduplication_spans_faces() {
    matrix(
        "dedup",
        &["declarer", "first", "second", "consumer"],
        |faces, ix, q| async move {
            let (d, p1, p2, c) = (
                &*faces[ix[0]],
                &*faces[ix[1]],
                &*faces[ix[2]],
                &*faces[ix[3]],
            );
            let row = "fifo.dedup";
            let q = format!("{q}.fifo");
            let spec = QueueSpec {
                fifo: true,
                content_dedup: true,
                ..QueueSpec::plain(&q)
            };
            need!(d.declare(&spec).await);
            let since = now_ms();
            let m = TestMessage::plain("same body");
            let first = need!(p1.publish(&q, &m).await);
            let second = need!(p2.publish(&q, &m).await);
            if let (Some(a), Some(b)) = (&first.id, &second.id) {
                assert_eq!(
                    a, b,
                    "{row}: a duplicate send answers with the original's id"
                );
            }
            let got = must_receive(c, &q, WAIT, row).await;
            let f = facts(&q, 1, first.id, since);
            let mut model = Model::new(p1, &m, &q);
            model.content_deduplicated();
            check(c, &model, &f, &got, row);
            c.ack(&got).await;
            assert_gone(&faces, &q, row).await;
            Outcome::Ran
        },
    )
    .await;
}

// The document.

/// Every row id in docs/protocol-mapping.md is one the faces' models or the
/// scenarios check, and every one they check is documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_row_is_checked() {
    let env = start();
    let mut checked: BTreeSet<&str> = SCENARIO_ROWS.iter().copied().collect();
    for f in faces(&env.ferry).await {
        checked.extend(f.row_ids());
    }
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/protocol-mapping.md"
    ))
    .expect("docs/protocol-mapping.md");
    let documented: BTreeSet<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(id, _)| id))
        .collect();
    let undocumented: Vec<_> = checked.difference(&documented).collect();
    let unchecked: Vec<_> = documented.difference(&checked).collect();
    assert!(
        undocumented.is_empty() && unchecked.is_empty(),
        "checked but not in the doc: {undocumented:?}; in the doc but not checked: {unchecked:?}"
    );
}

/// An AMQP declare of a queue made through SQS is answered declare-ok when
/// it asks for nothing that contradicts the queue: SQS attributes are not
/// AMQP arguments it must repeat (docs/protocol-mapping.md, "Queue
/// settings across faces").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amqp_declare_takes_a_queue_made_through_sqs() {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::{AMQPValue, FieldTable};
    let env = start();
    let sqs = sqs::SqsFace::new(&env.ferry);
    let name = "made-by-sqs";
    let spec = QueueSpec::plain(name);
    bounded("CreateQueue", sqs.declare(&spec))
        .await
        .expect("created through SQS");
    let conn = env.ferry.amqp_guest().await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let declare = |opts: QueueDeclareOptions, args: FieldTable| {
        let conn = &conn;
        async move {
            let ch = bounded("channel", conn.create_channel())
                .await
                .expect("channel");
            bounded("queue.declare", ch.queue_declare(name.into(), opts, args)).await
        }
    };
    // Nothing asked for: the SQS queue as it is.
    declare(durable, FieldTable::default())
        .await
        .expect("declare-ok for the SQS queue");
    // An argument that agrees with it (SQS's default retention, 4 days, is
    // the queue's message TTL).
    let mut ttl = FieldTable::default();
    ttl.insert("x-message-ttl".into(), AMQPValue::LongLongInt(345_600_000));
    declare(durable, ttl)
        .await
        .expect("an agreeing x-message-ttl");
    // What contradicts it is refused as RabbitMQ refuses an inequivalent
    // redeclare.
    let mut other = FieldTable::default();
    other.insert("x-message-ttl".into(), AMQPValue::LongLongInt(1000));
    let e = declare(durable, other).await.expect_err("a different TTL");
    assert!(
        e.to_string().contains("inequivalent arg 'x-message-ttl'"),
        "{e}"
    );
    let e = declare(QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect_err("a transient declare of a durable queue");
    assert!(e.to_string().contains("inequivalent arg 'durable'"), "{e}");

    // A redrive policy's maxReceiveCount is a quorum queue's delivery
    // limit one lower; its dead-letter queue is no exchange.
    let redriven = "made-by-sqs-redriven";
    bounded("CreateQueue", sqs.declare(&QueueSpec::plain("its-dlq")))
        .await
        .expect("dlq");
    let spec = QueueSpec {
        dead_letter: Some(DeadLetterSpec {
            target: "its-dlq".into(),
            after_receives: Some(3),
        }),
        ..QueueSpec::plain(redriven)
    };
    bounded("CreateQueue", sqs.declare(&spec))
        .await
        .expect("redriven queue");
    let declare_redriven = |args: FieldTable| {
        let conn = &conn;
        async move {
            let ch = bounded("channel", conn.create_channel())
                .await
                .expect("channel");
            bounded(
                "queue.declare",
                ch.queue_declare(redriven.into(), durable, args),
            )
            .await
        }
    };
    let mut quorum = FieldTable::default();
    quorum.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    quorum.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(2));
    declare_redriven(quorum)
        .await
        .expect("a delivery limit that agrees with maxReceiveCount");
    let mut dlx = FieldTable::default();
    dlx.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("amq.direct".into()),
    );
    let e = declare_redriven(dlx)
        .await
        .expect_err("an exchange where the queue dead-letters to a queue");
    assert!(
        e.to_string()
            .contains("inequivalent arg 'x-dead-letter-exchange' for queue 'made-by-sqs-redriven' in vhost '/': received 'amq.direct' but current is 'none'"),
        "{e}"
    );
}
