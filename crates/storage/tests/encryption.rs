//! Encryption at rest on a real journal: message bodies and headers are
//! nowhere in the files, everything comes back with the key, and without
//! it (or with another) the journal refuses to open, saying why. Rotating
//! the master key keeps the data readable with the new key only.

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
    let journal = Arc::new(
        Journal::open(
            dir,
            JournalConfig {
                segment_size,
                encryption: key.cloned(),
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
        b.create_namespace("ns");
        let q = b
            .declare_queue("ns", "payments", QueueConfig::default())
            .expect("declare")
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
    Keyring::rotate(dir.path(), &key, &rotated).expect("rotate");
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
