//! Journal tests: round trips, rolls, segment deletion, torn tails,
//! corruption, repair, group commit.

use std::path::Path;
use std::sync::Arc;

use ferry_core::clock::Timestamp;
use ferry_core::message::Message;
use ferry_core::queue::QueueConfig;
use ferry_core::router::{Binding, Destination, RouterConfig, RouterKind};
use ferry_core::store::{DurableState, Location, QueueId, Record, Store, StoreError};

use super::*;
use crate::seal::{SEALED, SEALED_NAMED};

const Q: QueueId = QueueId(1);

fn config(segment_size: u64) -> JournalConfig {
    JournalConfig {
        segment_size,
        ..JournalConfig::default()
    }
}

/// Opens and recovers; returns the journal and the state it replayed.
fn open(dir: &Path, cfg: JournalConfig) -> Result<(Journal, DurableState), StoreError> {
    let j = Journal::open(dir, cfg)?;
    let mut state = DurableState::default();
    j.recover(&mut |r, loc| state.apply(r, loc))?;
    Ok((j, state))
}

fn declare() -> Vec<Record> {
    vec![
        Record::NamespaceCreated { name: "ns".into() },
        Record::QueueDeclared {
            id: Q,
            namespace: "ns".into(),
            name: "q".into(),
            config: QueueConfig::default(),
        },
    ]
}

fn enqueued(seq: u64, body: &str) -> Record {
    Record::Enqueued {
        queue: Q,
        seq,
        at: Timestamp(seq),
        deliveries: 0,
        message: Arc::new(Message::new(body.to_owned()).persistent()),
        replaces: None,
        forwarded: false,
    }
}

/// Appends and waits for durability; returns the locations of enqueues.
fn write(j: &Journal, mut records: Vec<Record>) -> Vec<Location> {
    let mut locs = Vec::new();
    let commit = j.append(&mut records, &mut locs).expect("append");
    futures_wait(commit).expect("durable");
    locs
}

fn futures_wait(c: ferry_core::store::Commit) -> Result<(), StoreError> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(c.wait())
}

fn bodies(s: &DurableState) -> Vec<String> {
    s.queues
        .values()
        .flat_map(|q| q.messages.values())
        .map(|m| String::from_utf8_lossy(&m.message.body).into_owned())
        .collect()
}

fn segment_files(dir: &Path) -> Vec<u64> {
    segment::list(dir).expect("list")
}

/// The writer deletes dead segments just after completing the commits that
/// made them dead: wait (bounded) for it.
fn wait_for_files(dir: &Path, ok: impl Fn(&[u64]) -> bool) -> Vec<u64> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let files = segment_files(dir);
        if ok(&files) {
            return files;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "segments never went: {files:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn records_survive_a_reopen_with_their_locations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (j, s) = open(dir.path(), JournalConfig::default()).expect("open");
    assert_eq!(s, DurableState::default());
    write(&j, declare());
    let locs = write(&j, vec![enqueued(1, "a"), enqueued(2, "b")]);
    assert_eq!(locs.len(), 2);
    write(
        &j,
        vec![
            Record::Delivered {
                queue: Q,
                seq: 2,
                count: 3,
            },
            Record::Removed {
                queue: Q,
                seq: 1,
                loc: Some(locs[0]),
            },
        ],
    );
    drop(j);
    let (_j, s) = open(dir.path(), JournalConfig::default()).expect("reopen");
    assert_eq!(bodies(&s), ["b"]);
    let m = &s.queues[&Q].messages[&2];
    assert_eq!(m.deliveries, 3);
    assert_eq!(m.loc, Some(locs[1]), "recovery reports where the record is");
    assert_eq!(s.queues[&Q].name, "q");
}

#[test]
fn append_before_recover_or_after_close_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let j = Journal::open(dir.path(), JournalConfig::default()).expect("open");
    assert!(j.append(&mut declare(), &mut Vec::new()).is_err());
    j.recover(&mut |_, _| {}).expect("recover");
    j.close();
    assert_eq!(
        j.append(&mut declare(), &mut Vec::new()).err(),
        Some(StoreError::Closed)
    );
}

#[test]
fn segments_roll_and_dead_ones_are_deleted_without_losing_topology() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (j, _) = open(dir.path(), config(4096)).expect("open");
    write(&j, declare());
    write(
        &j,
        vec![
            Record::RouterDeclared {
                namespace: "ns".into(),
                name: "x".into(),
                config: RouterConfig::new(RouterKind::Topic),
            },
            Record::Bound {
                namespace: "ns".into(),
                binding: Binding::new("x", Destination::queue("q"), "a.#"),
            },
        ],
    );
    let body = "x".repeat(500);
    let mut locs = Vec::new();
    for seq in 1..=40 {
        locs.extend(write(&j, vec![enqueued(seq, &body)]));
    }
    assert!(
        segment_files(dir.path()).len() >= 4,
        "rolled: {:?}",
        segment_files(dir.path())
    );
    // Remove all but the newest message: every older segment dies.
    for (i, loc) in locs.iter().enumerate().take(39) {
        write(
            &j,
            vec![Record::Removed {
                queue: Q,
                seq: i as u64 + 1,
                loc: Some(*loc),
            }],
        );
    }
    let files = wait_for_files(dir.path(), |f| f.len() <= 2);
    assert!(
        !files.contains(&1),
        "the first segment, with the declarations, is gone"
    );
    drop(j);
    let (_j, s) = open(dir.path(), config(4096)).expect("reopen");
    assert_eq!(bodies(&s).len(), 1, "nothing removed came back");
    assert_eq!(
        s.queues[&Q].name, "q",
        "the queue came back from a checkpoint"
    );
    assert_eq!(s.bindings.len(), 1);
    assert_eq!(s.routers.len(), 1);
}

#[test]
fn a_live_message_keeps_its_segment_and_everything_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (j, _) = open(dir.path(), config(4096)).expect("open");
    write(&j, declare());
    let body = "y".repeat(500);
    let mut locs = Vec::new();
    for seq in 1..=30 {
        locs.extend(write(&j, vec![enqueued(seq, &body)]));
    }
    // Keep message 1 (in the first segment); remove the rest.
    for seq in 2..=30u64 {
        write(
            &j,
            vec![Record::Removed {
                queue: Q,
                seq,
                loc: Some(locs[seq as usize - 1]),
            }],
        );
    }
    assert!(segment_files(dir.path()).contains(&1));
    drop(j);
    let (_j, s) = open(dir.path(), config(4096)).expect("reopen");
    assert_eq!(
        s.queues[&Q].messages.keys().copied().collect::<Vec<_>>(),
        [1]
    );
}

#[test]
fn deleting_a_queue_frees_its_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (j, _) = open(dir.path(), config(4096)).expect("open");
    write(&j, declare());
    let body = "z".repeat(700);
    for seq in 1..=20 {
        write(&j, vec![enqueued(seq, &body)]);
    }
    write(&j, vec![Record::QueueDeleted { id: Q }]);
    // One more append moves the writer on so the dead prefix can go.
    write(
        &j,
        vec![Record::NamespaceCreated {
            name: "other".into(),
        }],
    );
    let live: u64 = j.segments().iter().map(|(_, n)| n).sum();
    assert_eq!(live, 0);
    wait_for_files(dir.path(), |f| f.len() <= 2);
    drop(j);
    let (_j, s) = open(dir.path(), config(4096)).expect("reopen");
    assert!(s.queues.is_empty());
    assert_eq!(s.message_count(), 0);
}

#[test]
fn removals_in_the_same_append_as_their_enqueue_settle_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (j, _) = open(dir.path(), config(4096)).expect("open");
    write(&j, declare());
    write(
        &j,
        vec![
            enqueued(1, "a"),
            Record::Removed {
                queue: Q,
                seq: 1,
                loc: None,
            },
        ],
    );
    let live: u64 = j.segments().iter().map(|(_, n)| n).sum();
    assert_eq!(live, 0);
    drop(j);
    let (_j, s) = open(dir.path(), config(4096)).expect("reopen");
    assert_eq!(s.message_count(), 0);
}

/// The newest segment's file and the offset where its last record starts.
fn last_record(dir: &Path) -> (std::path::PathBuf, usize, usize) {
    let id = *segment_files(dir).last().expect("a segment");
    let path = segment::path(dir, id);
    let data = std::fs::read(&path).expect("read");
    let mut pos = segment::HEADER as usize;
    let mut last = pos;
    while pos < data.len() {
        let f = frame::read(&data[pos..]).expect("valid frame");
        last = pos;
        pos += f.size;
    }
    (path, last, data.len())
}

#[test]
fn a_torn_tail_is_cut_at_every_offset_inside_the_last_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (j, _) = open(dir.path(), JournalConfig::default()).expect("open");
        write(&j, declare());
        write(&j, vec![enqueued(1, "kept")]);
        write(&j, vec![enqueued(2, "torn")]);
    }
    let (path, start, len) = last_record(dir.path());
    let original = std::fs::read(&path).expect("read");
    for cut in start..len {
        // Each reopen begins a new segment: drop those of the last round so
        // the cut one is the newest again.
        for id in segment_files(dir.path()) {
            if segment::path(dir.path(), id) != path {
                std::fs::remove_file(segment::path(dir.path(), id)).expect("remove");
            }
        }
        std::fs::write(&path, &original[..cut]).expect("cut");
        let (j, s) = open(dir.path(), JournalConfig::default())
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(bodies(&s), ["kept"], "cut at {cut}");
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), start as u64);
        // The journal goes on from the cut.
        write(&j, vec![enqueued(3, "after")]);
        drop(j);
        let (_j, s) = open(dir.path(), JournalConfig::default()).expect("reopen");
        assert_eq!(bodies(&s), ["kept", "after"], "cut at {cut}");
    }
}

#[test]
fn a_bad_crc_in_the_last_record_is_a_torn_tail_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (j, _) = open(dir.path(), JournalConfig::default()).expect("open");
        write(&j, declare());
        write(&j, vec![enqueued(1, "kept"), enqueued(2, "flipped")]);
    }
    let (path, start, len) = last_record(dir.path());
    let mut data = std::fs::read(&path).expect("read");
    data[start + (len - start) / 2] ^= 0xff;
    std::fs::write(&path, &data).expect("write");
    let (_j, s) = open(dir.path(), JournalConfig::default()).expect("open");
    assert_eq!(bodies(&s), ["kept"]);
}

#[test]
fn damage_in_an_older_segment_stops_the_start_unless_repairing() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (j, _) = open(dir.path(), config(4096)).expect("open");
        write(&j, declare());
        let body = "w".repeat(300);
        for seq in 1..=40 {
            write(&j, vec![enqueued(seq, &body)]);
        }
    }
    let first = segment::path(dir.path(), 1);
    let mut data = std::fs::read(&first).expect("read");
    let mid = data.len() / 2;
    data[mid] ^= 0x55;
    std::fs::write(&first, &data).expect("write");

    let err = open(dir.path(), config(4096)).err().expect("refused");
    match err {
        StoreError::Corrupt { file, offset, .. } => {
            assert!(file.ends_with("00000000000000000001.seg"), "{file}");
            assert!(offset > 0 && offset <= mid as u64, "offset {offset}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let repaired = JournalConfig {
        repair: true,
        ..config(4096)
    };
    let (_j, s) = open(dir.path(), repaired).expect("repair opens");
    let n = s.message_count();
    assert!((35..40).contains(&n), "one record lost, the rest kept: {n}");
}

#[test]
fn a_foreign_or_future_segment_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (j, _) = open(dir.path(), JournalConfig::default()).expect("open");
        write(&j, declare());
        write(&j, vec![enqueued(1, "a")]);
        drop(j);
        // A newer segment makes the first one "older".
        let (j, _) = open(dir.path(), config(4096)).expect("open");
        drop(j);
    }
    let p = segment::path(dir.path(), 1);
    let mut data = std::fs::read(&p).expect("read");
    data[8] = 9; // format version 9
    let crc = crc32c::crc32c(&data[..28]);
    data[28..32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&p, &data).expect("write");
    let err = open(dir.path(), JournalConfig::default())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("format version 9"), "{err}");
}

#[test]
fn concurrent_publishers_share_syncs_and_all_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (j, _) = open(dir.path(), JournalConfig::default()).expect("open");
    write(&j, declare());
    let j = Arc::new(j);
    let threads: Vec<_> = (0..16u64)
        .map(|t| {
            let j = Arc::clone(&j);
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                for i in 0..50u64 {
                    let mut r = vec![enqueued(t * 1000 + i + 1, "m")];
                    let c = j.append(&mut r, &mut Vec::new()).expect("append");
                    rt.block_on(c.wait()).expect("durable");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("publisher");
    }
    let j = Arc::into_inner(j).expect("last reference");
    let stats = j.stats();
    assert_eq!(stats.commits, 1 + 16 * 50);
    assert!(
        stats.syncs < stats.commits,
        "16 publishers waiting on their confirms share syncs: {stats:?}"
    );
    drop(j);
    let (_j, s) = open(dir.path(), JournalConfig::default()).expect("reopen");
    assert_eq!(s.message_count(), 16 * 50);
}

#[test]
fn interval_and_never_policies_confirm_and_recover() {
    for policy in [
        FsyncPolicy::Interval(std::time::Duration::from_millis(5)),
        FsyncPolicy::Never,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = JournalConfig {
            fsync: policy,
            ..JournalConfig::default()
        };
        let (j, _) = open(dir.path(), cfg.clone()).expect("open");
        write(&j, declare());
        write(&j, vec![enqueued(1, "a")]);
        drop(j);
        let (_j, s) = open(dir.path(), cfg).expect("reopen");
        assert_eq!(bodies(&s), ["a"], "{policy:?}");
    }
}

#[test]
fn a_segment_torn_at_creation_is_dropped_and_the_topology_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (j, _) = open(dir.path(), JournalConfig::default()).expect("open");
        write(&j, declare());
        write(&j, vec![enqueued(1, "kept")]);
    }
    // A crash right after the next segment was created: header only, or
    // not even that.
    let next = segment_files(dir.path())
        .last()
        .copied()
        .expect("a segment")
        + 1;
    std::fs::write(segment::path(dir.path(), next), segment::header(next)).expect("write");
    let (j, s) = open(dir.path(), JournalConfig::default()).expect("opens");
    assert_eq!(bodies(&s), ["kept"]);
    // Appends go to a newer segment with its own checkpoint; the empty one
    // is dead and goes with the dead prefix.
    assert!(j.segments().iter().any(|(id, _)| *id > next));
    drop(j);
    let newest = segment_files(dir.path()).last().copied().expect("segment");
    let torn = segment::path(dir.path(), newest + 1);
    std::fs::write(&torn, b"FERR").expect("write");
    let (_j, s) = open(dir.path(), JournalConfig::default()).expect("opens");
    assert!(
        !torn.exists(),
        "a segment torn inside its header is removed"
    );
    assert_eq!(bodies(&s), ["kept"]);
    assert_eq!(s.queues[&Q].name, "q", "the topology is there");
}

/// One keyring for every case of the property below (opening one saves
/// `keys.json` with two syncs).
fn shared_ring() -> &'static Keyring {
    static RING: std::sync::OnceLock<(tempfile::TempDir, Keyring)> = std::sync::OnceLock::new();
    let (_, ring) = RING.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = [(
            "k".to_owned(),
            Arc::new(MasterKey::generate().expect("key")),
        )]
        .into_iter()
        .collect();
        let ring = Keyring::open(
            dir.path(),
            Some(&MasterKey::generate().expect("key")),
            &keys,
            &[1],
        )
        .expect("keys")
        .expect("a keyring");
        ring.ensure(None, 1).expect("data key");
        ring.ensure(Some("k"), 1).expect("data key");
        (dir, ring)
    });
    ring
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, failure_persistence: None, ..Default::default() })]

    /// Sealed frames of any bytes (both kinds, with and without the keys)
    /// come back as an error, never a panic or a record.
    #[test]
    fn damaged_sealed_frames_are_refused(
        named in proptest::prelude::any::<bool>(),
        payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        segment in 0u64..3,
    ) {
        let kind = if named { SEALED_NAMED } else { SEALED };
        proptest::prop_assert!(decode_frame(Some(shared_ring()), segment, 64, kind, &payload).is_err());
        proptest::prop_assert!(decode_frame(None, segment, 64, kind, &payload).is_err());
    }
}

/// A queue that names a key the journal does not hold: sealing any of its
/// messages fails.
const UNSEALABLE: QueueId = QueueId(2);

fn unsealable_queue() -> Record {
    Record::QueueDeclared {
        id: UNSEALABLE,
        namespace: "ns".into(),
        name: "names-a-missing-key".into(),
        // The core refuses such a queue; the journal must not rely on it.
        config: QueueConfig {
            encryption_key: Some("missing".into()),
            ..QueueConfig::default()
        },
    }
}

fn unsealable_message(body: &str) -> Record {
    Record::Enqueued {
        queue: UNSEALABLE,
        seq: 1,
        at: Timestamp(3),
        deliveries: 0,
        message: Arc::new(Message::new(body.to_owned()).persistent()),
        replaces: None,
        forwarded: false,
    }
}

/// A journal holding one queue key ("k"), so that it seals.
fn with_queue_key(key: &Arc<MasterKey>, segment_size: u64) -> JournalConfig {
    JournalConfig {
        queue_keys: [("k".to_owned(), Arc::clone(key))].into_iter().collect(),
        ..config(segment_size)
    }
}

/// An append whose last record cannot be sealed is refused whole: none of
/// its records reaches the disk, and the journal goes on.
#[test]
fn a_refused_append_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = Arc::new(MasterKey::generate().expect("key"));
    let cfg = || with_queue_key(&key, 64 * 1024);
    let (j, _) = open(dir.path(), cfg()).expect("open");
    let mut records = declare();
    records.push(unsealable_queue());
    write(&j, records);
    let mut refused = vec![enqueued(1, "lost-1"), enqueued(2, "lost-2")];
    refused.push(unsealable_message("lost-3"));
    let mut locations = Vec::new();
    assert!(j.append(&mut refused, &mut locations).is_err());
    assert!(locations.is_empty(), "no location for a refused record");
    write(&j, vec![Record::QueueDeleted { id: UNSEALABLE }]);
    write(&j, vec![enqueued(3, "kept")]);
    j.close();
    drop(j);
    let (_, state) = open(dir.path(), cfg()).expect("reopen");
    assert_eq!(bodies(&state), vec!["kept".to_owned()]);
}

/// A refused append that begins by rolling to a new segment keeps that
/// segment's topology checkpoint: once the older segments are gone, the
/// queues still come back from it.
#[test]
fn a_refused_append_that_rolled_keeps_the_new_segments_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = Arc::new(MasterKey::generate().expect("key"));
    let cfg = || with_queue_key(&key, 4096);
    let (j, _) = open(dir.path(), cfg()).expect("open");
    write(&j, declare());
    write(&j, vec![unsealable_queue()]);
    // Past the segment size and written: the next append begins by rolling.
    let first = write(&j, vec![enqueued(1, &"x".repeat(5000))]);
    let mut refused = vec![enqueued(2, "lost"), unsealable_message("lost too")];
    assert!(j.append(&mut refused, &mut Vec::new()).is_err());
    write(&j, vec![Record::QueueDeleted { id: UNSEALABLE }]);
    write(
        &j,
        vec![Record::Removed {
            queue: Q,
            seq: 1,
            loc: first.first().copied(),
        }],
    );
    // The first segment, with the declarations, dies and is deleted.
    wait_for_files(dir.path(), |f| !f.contains(&1));
    j.close();
    drop(j);
    let (_j, s) = open(dir.path(), cfg()).expect("reopen");
    assert_eq!(
        s.queues.get(&Q).map(|q| q.name.as_str()),
        Some("q"),
        "the queue came back from the rolled segment's checkpoint"
    );
    assert!(bodies(&s).is_empty(), "{:?}", bodies(&s));
}

/// A FIFO queue's sends, all removed again, over enough segments to roll:
/// what is left on disk holds nothing live, only windows.
fn fifo_sends_all_removed(j: &Journal, n: u64) {
    write(
        j,
        vec![
            Record::NamespaceCreated { name: "ns".into() },
            Record::QueueDeclared {
                id: Q,
                namespace: "ns".into(),
                name: "q.fifo".into(),
                config: QueueConfig::fifo(),
            },
        ],
    );
    let now = system_now();
    for seq in 1..=n {
        let mut m = Message::new("p".repeat(300)).persistent();
        m.group_id = Some("g".into());
        m.dedup_id = Some(format!("order-{seq}"));
        write(
            j,
            vec![
                Record::Enqueued {
                    queue: Q,
                    seq,
                    at: now,
                    deliveries: 0,
                    message: Arc::new(m),
                    replaces: None,
                    forwarded: false,
                },
                Record::Removed {
                    queue: Q,
                    seq,
                    loc: None,
                },
            ],
        );
    }
}

fn kept_files(dir: &Path) -> Vec<u64> {
    kept::list(dir).expect("list")
}

/// The kept keys a journal hands back on recovery, by dedup id.
fn kept_on_recovery(dir: &Path, cfg: JournalConfig) -> Result<Vec<String>, StoreError> {
    let j = Journal::open(dir, cfg)?;
    let mut ids = Vec::new();
    j.recover(&mut |r, _| {
        if let Record::DedupKept { message, .. } = r {
            ids.extend(message.dedup_id.clone());
        }
    })?;
    Ok(ids)
}

#[test]
fn dead_segments_go_once_their_windows_keys_are_carried_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (j, _) = open(dir.path(), config(4096)).expect("open");
        fifo_sends_all_removed(&j, 80);
        let before = segment_files(dir.path()).len();
        assert!(before > 4, "rolled: {before}");
        // The windows are open: nothing went by itself.
        assert_eq!(before, j.segments().len());
        let freed = j.carry_dedup_windows();
        assert_eq!(freed + 1, before, "every segment but the head");
        wait_for_files(dir.path(), |f| f.len() == 1);
        assert_eq!(kept_files(dir.path()).len(), freed);
        // Carried once: a second pass has nothing to do.
        assert_eq!(j.carry_dedup_windows(), 0);
    }
    let mut ids = kept_on_recovery(dir.path(), config(4096)).expect("opens");
    ids.sort_by_key(|id| id[6..].parse::<u64>().unwrap_or(0));
    // The head's own sends come back from the head, not from a file.
    assert!(ids.len() >= 60 && ids.len() < 80, "{}", ids.len());
    assert_eq!(ids.first().map(String::as_str), Some("order-1"));
}

#[test]
fn a_damaged_kept_keys_file_stops_the_start_unless_repairing() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (j, _) = open(dir.path(), config(4096)).expect("open");
        fifo_sends_all_removed(&j, 20);
        assert!(j.carry_dedup_windows() > 0);
    }
    let id = kept_files(dir.path())[0];
    let path = kept::path(dir.path(), id);
    let mut data = std::fs::read(&path).expect("read");
    let last = data.len() - 3;
    data[last] ^= 0x55;
    std::fs::write(&path, &data).expect("write");
    match kept_on_recovery(dir.path(), config(4096)) {
        Err(StoreError::Corrupt { file, .. }) => assert!(file.ends_with(".keys"), "{file}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let repaired = JournalConfig {
        repair: true,
        ..config(4096)
    };
    let ids = kept_on_recovery(dir.path(), repaired).expect("repair opens");
    assert!(!ids.is_empty(), "the undamaged keys still come back");
}

#[test]
fn expired_and_half_written_kept_files_go_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (j, _) = open(dir.path(), config(4096)).expect("open");
        fifo_sends_all_removed(&j, 60);
        assert!(j.carry_dedup_windows() > 1);
    }
    let ids = kept_files(dir.path());
    // One file's windows are over (rewritten with an old end); a crash
    // left another half written.
    let old = kept::path(dir.path(), ids[0]);
    let mut data = std::fs::read(&old).expect("read");
    data[..kept::HEADER].copy_from_slice(&kept::header(ids[0], Timestamp(1)));
    std::fs::write(&old, &data).expect("write");
    let tmp = dir.path().join("00000000000000000099.keys.tmp");
    std::fs::write(&tmp, b"FERRYKEY half").expect("write");
    assert!(ids.len() > 1, "{ids:?}");
    kept_on_recovery(dir.path(), config(4096)).expect("opens");
    assert!(!old.exists(), "an expired kept-keys file is deleted");
    assert!(!tmp.exists(), "a half-written one too");
    assert_eq!(kept_files(dir.path()), ids[1..]);
}

#[test]
fn kept_keys_of_an_encrypted_journal_are_sealed_and_keep_their_data_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = Arc::new(MasterKey::generate().expect("key"));
    let cfg = || JournalConfig {
        encryption: Some(Arc::clone(&key)),
        ..config(4096)
    };
    {
        let (j, _) = open(dir.path(), cfg()).expect("open");
        fifo_sends_all_removed(&j, 20);
        assert!(j.carry_dedup_windows() > 0);
        wait_for_files(dir.path(), |f| f.len() == 1);
    }
    let id = kept_files(dir.path())[0];
    let data = std::fs::read(kept::path(dir.path(), id)).expect("read");
    assert!(
        !data.windows(6).any(|w| w == b"order-"),
        "dedup ids are sealed"
    );
    let ids = kept_on_recovery(dir.path(), cfg()).expect("opens with its data keys");
    assert!(ids.iter().any(|i| i == "order-1"));
}

/// A crash after a segment's keys were carried out but before it was
/// deleted leaves both: the start reads both, and the segment no longer
/// waits. Its kept keys are sealed as its sends were: carried after the
/// journal was given a key, the clear sends of an older segment stay clear,
/// and no data key is made for it (which would make its clear messages
/// look forged).
#[test]
fn a_segment_left_beside_its_kept_keys_opens_and_goes() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (j, _) = open(dir.path(), config(4096)).expect("open");
        fifo_sends_all_removed(&j, 40);
    }
    let key = Arc::new(MasterKey::generate().expect("key"));
    let encrypted = || JournalConfig {
        encryption: Some(Arc::clone(&key)),
        ..config(4096)
    };
    // A crash before the writer deleted any of them: the segments as they
    // were (deletion is oldest first, so a crash leaves a whole prefix).
    let old = segment_files(dir.path());
    let aside = tempfile::tempdir().expect("tempdir");
    {
        let (j, _) = open(dir.path(), encrypted()).expect("open");
        for id in &old {
            std::fs::copy(
                segment::path(dir.path(), *id),
                segment::path(aside.path(), *id),
            )
            .expect("copy");
        }
        assert!(j.carry_dedup_windows() > 0);
        wait_for_files(dir.path(), |f| f.first() != old.first());
    }
    let carried = kept_files(dir.path());
    assert!(!carried.is_empty());
    for id in &old {
        if !segment::path(dir.path(), *id).exists() {
            std::fs::copy(
                segment::path(aside.path(), *id),
                segment::path(dir.path(), *id),
            )
            .expect("put back");
        }
    }
    let (j, _) = open(dir.path(), encrypted()).expect("opens with both");
    // Not waiting for their windows: they go with the next write.
    write(&j, vec![Record::NamespaceCreated { name: "x".into() }]);
    wait_for_files(dir.path(), |f| carried.iter().all(|c| !f.contains(c)));
    drop(j);
    let ids = kept_on_recovery(dir.path(), encrypted()).expect("opens");
    assert!(ids.iter().any(|i| i == "order-1"), "{ids:?}");
}
