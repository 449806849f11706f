//! Encryption at rest on a real journal: message bodies and headers are
//! nowhere in the files, everything comes back with the key, and without
//! it (or with another) the journal refuses to open, saying why. Rotating
//! the master key keeps the data readable with the new key only. A queue
//! naming its own key is sealed with it alone, needs it to start while any
//! of its messages are on disk, and not once they are gone.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::Broker;
use ferry_core::clock::FakeClock;
use ferry_core::ids::SequentialIds;
use ferry_core::message::Message;
use ferry_core::queue::{QueueConfig, ReceiveMode};
use ferry_core::store::Store;
use ferry_storage::{Journal, JournalConfig, Keyring, MasterKey};

const SECRET: &str = "card 4111-1111-1111-1111";

fn open(
    dir: &Path,
    key: Option<&Arc<MasterKey>>,
    segment_size: u64,
) -> Result<(Arc<Broker>, Arc<Journal>), String> {
    open_with_queue_keys(dir, key, &[], segment_size)
}

fn open_with_queue_keys(
    dir: &Path,
    key: Option<&Arc<MasterKey>>,
    queue_keys: &[(&str, &Arc<MasterKey>)],
    segment_size: u64,
) -> Result<(Arc<Broker>, Arc<Journal>), String> {
    let journal = Arc::new(
        Journal::open(
            dir,
            JournalConfig {
                segment_size,
                encryption: key.cloned(),
                queue_keys: queue_keys
                    .iter()
                    .map(|(n, k)| ((*n).to_owned(), Arc::clone(k)))
                    .collect(),
                ..JournalConfig::default()
            },
        )
        .map_err(|e| e.to_string())?,
    );
    let broker = Broker::open(
        Arc::new(FakeClock::default()),
        Arc::new(SequentialIds::default()),
        Arc::clone(&journal) as Arc<dyn Store>,
    )
    .map_err(|e| e.to_string())?;
    Ok((broker, journal))
}

/// Every file under `dir`, read whole, concatenated.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let p = entry.path();
        if p.is_file() {
            out.extend(std::fs::read(&p).expect("read"));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn bodies_and_headers_are_sealed_and_need_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = Arc::new(MasterKey::generate().expect("key"));
    {
        // Small segments: records land in several, each with its own key.
        let (b, j) = open(dir.path(), Some(&key), 4096).expect("open");
        let _ = b.create_namespace("ns").expect("namespace");
        let q = b
            .declare_queue("ns", "payments", QueueConfig::default())
            .expect("declare")
            .0
            .queue;
        for i in 0..100 {
            let m = Message::new(format!("{SECRET} #{i}"))
                .persistent()
                .with_header("cardholder", "Ada Lovelace");
            let (_, commit) = b.send(&q, m).expect("send");
            commit.wait().await.expect("durable");
        }
        drop(b);
        j.close();
    }
    let files = all_bytes(dir.path());
    assert!(!contains(&files, SECRET.as_bytes()), "no body in the clear");
    assert!(!contains(&files, b"Ada Lovelace"), "no header in the clear");
    assert!(contains(&files, b"payments"), "topology stays readable");

    // Without the key, or with another: a clear refusal.
    let err = open(dir.path(), None, 4096).err().expect("refused");
    assert!(err.contains("encrypted"), "{err}");
    let other = Arc::new(MasterKey::generate().expect("key"));
    let err = open(dir.path(), Some(&other), 4096).err().expect("refused");
    assert!(err.contains("does not open"), "{err}");

    // With it, everything comes back.
    let (b, j) = open(dir.path(), Some(&key), 4096).expect("reopen");
    let q = b.queue("ns", "payments").expect("queue");
    let got = b.receive(&q, 200, ReceiveMode::Lease(Duration::from_secs(30)));
    assert_eq!(got.len(), 100);
    assert!(String::from_utf8_lossy(&got[0].message.body).starts_with(SECRET));
    drop(b);
    j.close();

    // Rotation: the new key opens it, the old one no longer does.
    let rotated = Arc::new(MasterKey::generate().expect("key"));
    Keyring::rotate(dir.path(), None, &key, &rotated).expect("rotate");
    assert!(open(dir.path(), Some(&key), 4096).is_err());
    let (b, j) = open(dir.path(), Some(&rotated), 4096).expect("rotated key");
    assert_eq!(
        b.queue("ns", "payments").expect("queue").stats().ready
            + b.queue("ns", "payments").expect("queue").stats().leased,
        100
    );
    drop(b);
    j.close();
}

#[tokio::test]
async fn a_queue_with_its_own_key_is_sealed_with_it_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pay = Arc::new(MasterKey::generate().expect("key"));
    let with_pay = [("pay", &pay)];
    let keyed = |name: &str| QueueConfig {
        encryption_key: Some(name.to_owned()),
        ..QueueConfig::default()
    };
    {
        // No journal key: only the queue that names one is sealed.
        let (b, j) = open_with_queue_keys(dir.path(), None, &with_pay, 4096).expect("open");
        let _ = b.create_namespace("ns").expect("namespace");
        let err = b.declare_queue("ns", "typo", keyed("pya")).err();
        assert!(
            err.is_some_and(|e| e.to_string().contains("no encryption key named 'pya'")),
            "a queue may name only a key that was given"
        );
        let q = b
            .declare_queue("ns", "payments", keyed("pay"))
            .expect("declare")
            .0
            .queue;
        let plain = b
            .declare_queue("ns", "logs", QueueConfig::default())
            .expect("declare")
            .0
            .queue;
        for i in 0..20 {
            let (_, c) = b
                .send(&q, Message::new(format!("{SECRET} #{i}")).persistent())
                .expect("send");
            c.wait().await.expect("durable");
            let (_, c) = b
                .send(&plain, Message::new(format!("log line #{i}")).persistent())
                .expect("send");
            c.wait().await.expect("durable");
        }
        drop(b);
        j.close();
    }
    let files = all_bytes(dir.path());
    assert!(
        !contains(&files, SECRET.as_bytes()),
        "the keyed queue is sealed"
    );
    assert!(contains(&files, b"log line #3"), "the other queue is not");

    // Without its key: a refusal that names the key.
    let err = open(dir.path(), None, 4096).err().expect("refused");
    assert!(err.contains("'pay'"), "{err}");
    let other = Arc::new(MasterKey::generate().expect("key"));
    assert!(open_with_queue_keys(dir.path(), None, &[("pay", &other)], 4096).is_err());

    // With it, everything comes back; then the queue goes, and with it
    // every record its key sealed once the segments holding them are dead.
    let (b, j) = open_with_queue_keys(dir.path(), None, &with_pay, 4096).expect("reopen");
    let q = b.queue("ns", "payments").expect("queue");
    let got = b.receive(&q, 100, ReceiveMode::Lease(Duration::from_secs(30)));
    assert_eq!(got.len(), 20);
    assert!(String::from_utf8_lossy(&got[0].message.body).starts_with(SECRET));
    let _ = b
        .delete_queue("ns", "payments", false, false)
        .expect("delete");
    let _ = b.delete_queue("ns", "logs", false, false).expect("delete");
    let logs = b
        .declare_queue("ns", "logs2", QueueConfig::default())
        .expect("declare")
        .0
        .queue;
    // Enough new records to roll past the old segments so they are deleted.
    for i in 0..40 {
        let (_, c) = b
            .send(
                &logs,
                Message::new(format!("later line #{i} {}", "x".repeat(200))).persistent(),
            )
            .expect("send");
        c.wait().await.expect("durable");
    }
    let first_live = j.segments().first().map(|(id, _)| *id);
    drop(b);
    j.close();
    assert!(first_live.is_some_and(|id| id > 1), "old segments deleted");
    let (b, j) = open(dir.path(), None, 4096).expect("the key is no longer needed");
    assert!(b.queue("ns", "payments").is_err());
    drop(b);
    j.close();
}
