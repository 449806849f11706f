use std::path::Path;
use std::time::Duration;

use ferry_core::group::{Committed, OffsetChange, OffsetKey, OffsetStore};
use ferry_core::store::StoreError;

use super::{FILE, HEADER_LEN, NEW_FILE, OffsetsLog, codec};
use crate::FsyncPolicy;

fn key(group: &str, topic: &str, partition: u32) -> OffsetKey {
    OffsetKey {
        namespace: "/".into(),
        group: group.into(),
        topic: topic.into(),
        partition,
    }
}

fn at(offset: i64) -> Committed {
    Committed {
        offset,
        leader_epoch: 3,
        metadata: format!("m{offset}"),
        commit_ms: 1_700_000_000_000 + offset,
    }
}

fn commit(k: &OffsetKey, offset: i64) -> OffsetChange {
    OffsetChange::Commit(k.clone(), at(offset))
}

fn open(dir: &Path) -> OffsetsLog {
    OffsetsLog::open(dir, FsyncPolicy::Always, false).unwrap()
}

fn file_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(FILE)).unwrap().len()
}

async fn record(log: &OffsetsLog, changes: Vec<OffsetChange>) {
    log.record(changes).wait().await.unwrap();
}

#[tokio::test]
async fn changes_apply_in_order_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (a0, a1, b0) = (key("a", "t", 0), key("a", "t", 1), key("b", "t", 0));
    let other_ns = OffsetKey {
        namespace: "/other".into(),
        ..key("a", "t", 0)
    };
    let want = {
        let log = open(dir.path());
        record(&log, vec![commit(&a0, 1), commit(&a1, 2), commit(&b0, 3)]).await;
        record(&log, vec![commit(&other_ns, 4), commit(&a0, 10)]).await;
        // Deleted, then committed again in the same call: vector order.
        record(
            &log,
            vec![OffsetChange::Delete(a1.clone()), commit(&b0, 30)],
        )
        .await;
        record(
            &log,
            vec![
                OffsetChange::Delete(key("nobody", "t", 0)),
                commit(&key("c", "u", 7), 5),
            ],
        )
        .await;
        let group_a = OffsetChange::DeleteGroup {
            namespace: "/".into(),
            group: "a".into(),
        };
        record(&log, vec![group_a, commit(&key("a", "v", 0), 6)]).await;
        let want = vec![
            (key("a", "v", 0), at(6)),
            (key("b", "t", 0), at(30)),
            (key("c", "u", 7), at(5)),
            (other_ns, at(4)),
        ];
        assert_eq!(log.load().unwrap(), want, "sorted by key");
        want
    };
    assert_eq!(open(dir.path()).load().unwrap(), want);
}

#[tokio::test]
async fn empty_records_and_records_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    assert!(log.record(Vec::new()).is_done(), "nothing before it");
    let first = log.record(vec![commit(&key("g", "t", 0), 1)]);
    // Waits for what came before it.
    let empty = log.record(Vec::new());
    assert_eq!(empty.wait().await, Ok(()));
    assert_eq!(first.outcome(), Some(Ok(())));
    log.close();
    let late = log.record(vec![commit(&key("g", "t", 0), 2)]);
    assert_eq!(late.wait().await, Err(StoreError::Closed));
    drop(log);
    assert_eq!(
        open(dir.path()).load().unwrap(),
        vec![(key("g", "t", 0), at(1))]
    );
}

#[tokio::test]
async fn interval_and_never_policies_keep_what_is_closed() {
    for policy in [
        FsyncPolicy::Interval(Duration::from_millis(20)),
        FsyncPolicy::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = OffsetsLog::open(dir.path(), policy, false).unwrap();
            for i in 0..20 {
                record(&log, vec![commit(&key("g", "t", i % 3), i.into())]).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            record(&log, vec![commit(&key("g", "t", 0), 99)]).await;
        }
        let got = open(dir.path()).load().unwrap();
        let want = vec![
            (key("g", "t", 0), at(99)),
            (key("g", "t", 1), at(19)),
            (key("g", "t", 2), at(17)),
        ];
        assert_eq!(got, want, "{policy:?}");
    }
}

/// Three commits of their own key; the file's length after each.
async fn three_commits(dir: &Path) -> [u64; 3] {
    let log = open(dir);
    let mut ends = [0; 3];
    for (i, end) in ends.iter_mut().enumerate() {
        record(&log, vec![commit(&key("g", "t", i as u32), i as i64)]).await;
        *end = file_len(dir);
    }
    ends
}

fn keys_of(log: &OffsetsLog) -> Vec<u32> {
    log.load()
        .unwrap()
        .into_iter()
        .map(|(k, _)| k.partition)
        .collect()
}

#[tokio::test]
async fn a_torn_tail_is_trimmed_and_the_rest_kept() {
    // Cut inside the last frame, inside its header, and the last frame
    // whole but with a bad checksum; and zeros a crash left allocated.
    for damage in ["cut", "cut header", "flip", "zeros"] {
        let dir = tempfile::tempdir().unwrap();
        let ends = three_commits(dir.path()).await;
        let path = dir.path().join(FILE);
        let mut data = std::fs::read(&path).unwrap();
        match damage {
            "cut" => data.truncate(ends[2] as usize - 3),
            "cut header" => data.truncate(ends[1] as usize + 5),
            "flip" => data[ends[1] as usize + 12] ^= 0x40,
            _ => data.extend_from_slice(&[0; 4096]),
        }
        std::fs::write(&path, &data).unwrap();
        let log = open(dir.path());
        let want_end = if damage == "zeros" { ends[2] } else { ends[1] };
        let want_keys: &[u32] = if damage == "zeros" {
            &[0, 1, 2]
        } else {
            &[0, 1]
        };
        assert_eq!(keys_of(&log), want_keys, "{damage}");
        assert_eq!(file_len(dir.path()), want_end, "{damage}: trimmed");
        // Appends go on after the cut and read back.
        record(&log, vec![commit(&key("g", "t", 9), 9)]).await;
        drop(log);
        assert_eq!(keys_of(&open(dir.path())).last(), Some(&9), "{damage}");
    }
}

#[tokio::test]
async fn damage_with_records_after_it_refuses_to_open() {
    for flip_at in [1usize, 4, 12] {
        let dir = tempfile::tempdir().unwrap();
        let ends = three_commits(dir.path()).await;
        let path = dir.path().join(FILE);
        let mut data = std::fs::read(&path).unwrap();
        // Inside the second frame (its length, checksum, or payload).
        data[ends[0] as usize + flip_at] ^= 0x01;
        std::fs::write(&path, &data).unwrap();
        match OffsetsLog::open(dir.path(), FsyncPolicy::Always, false) {
            Err(StoreError::Corrupt { offset, .. }) => assert_eq!(offset, ends[0]),
            other => panic!("flip at {flip_at}: {:?}", other.map(|_| ())),
        }
        assert_eq!(std::fs::read(&path).unwrap(), data, "left as it was");

        // --repair skips the damaged record and keeps the others, and the
        // rewritten file opens cleanly afterwards.
        let log = OffsetsLog::open(dir.path(), FsyncPolicy::Always, true).unwrap();
        assert_eq!(keys_of(&log), vec![0, 2], "flip at {flip_at}");
        record(&log, vec![commit(&key("g", "t", 3), 3)]).await;
        drop(log);
        let log = OffsetsLog::open(dir.path(), FsyncPolicy::Always, false).unwrap();
        assert_eq!(keys_of(&log), vec![0, 2, 3]);
    }
}

#[test]
fn a_foreign_header_or_unknown_version_refuses_to_open() {
    let mut v2 = super::header().to_vec();
    v2[8..12].copy_from_slice(&2u32.to_le_bytes());
    for contents in [v2, b"FERRYJNL\x01\0\0\0".to_vec(), b"FERRY".to_vec()] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), &contents).unwrap();
        let opened = OffsetsLog::open(dir.path(), FsyncPolicy::Always, false);
        assert!(matches!(opened, Err(StoreError::Corrupt { .. })));
    }
}

#[tokio::test]
async fn many_commits_of_few_keys_are_compacted_away() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<OffsetKey> = (0..8).map(|p| key("g", "t", p)).collect();
    let big = |offset: i64| Committed {
        metadata: "x".repeat(1000),
        ..at(offset)
    };
    let mut written = 0u64;
    {
        let log = open(dir.path());
        // ~6 MiB of commits, in rounds of 100 (one commit each).
        for round in 0..60 {
            let mut last = None;
            for i in 0..100 {
                let n = round * 100 + i;
                let c = OffsetChange::Commit(keys[n % 8].clone(), big(n as i64));
                written += codec::put(&mut Vec::new(), &c) as u64;
                last = Some(log.record(vec![c]));
            }
            last.unwrap().wait().await.unwrap();
        }
        assert_eq!(log.load().unwrap().len(), 8);
    }
    let len = file_len(dir.path());
    assert!(written > super::writer::COMPACT_MIN, "{written} written");
    assert!(
        len < super::writer::COMPACT_MIN,
        "{len} bytes after {written} written"
    );
    let want: Vec<(OffsetKey, Committed)> = (0..8)
        .map(|p| (keys[p].clone(), big((5992 + p) as i64)))
        .collect();
    let log = open(dir.path());
    assert_eq!(log.load().unwrap(), want);
    assert!(!dir.path().join(NEW_FILE).exists());
}

#[tokio::test]
async fn a_stale_compaction_file_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let ends = three_commits(dir.path()).await;
    let new = dir.path().join(NEW_FILE);
    std::fs::write(&new, b"FERRYOFS\x01\0\0\0half a compaction").unwrap();
    let log = open(dir.path());
    assert_eq!(keys_of(&log), [0, 1, 2]);
    assert!(!new.exists());
    assert_eq!(file_len(dir.path()), ends[2]);
    drop(log);
    // A crash while the log was first created: no log yet, only `.new`.
    let fresh = tempfile::tempdir().unwrap();
    std::fs::write(fresh.path().join(NEW_FILE), b"FERRY").unwrap();
    assert!(open(fresh.path()).load().unwrap().is_empty());
    assert_eq!(file_len(fresh.path()), HEADER_LEN as u64);
}

#[tokio::test]
async fn records_from_many_threads_all_complete_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let (threads, each) = (6u32, 300u32);
    {
        let log = open(dir.path());
        let commits: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let log = &log;
                    s.spawn(move || {
                        (0..each)
                            .map(|i| {
                                let k = key(&format!("g{t}"), "t", i);
                                log.record(vec![commit(&k, i64::from(i))])
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        for c in commits {
            c.wait().await.unwrap();
        }
    }
    let got = open(dir.path()).load().unwrap();
    assert_eq!(got.len(), (threads * each) as usize);
    for (k, c) in got {
        assert_eq!(c, at(i64::from(k.partition)));
    }
}

#[test]
fn every_change_round_trips_and_cut_payloads_do_not_decode() {
    let changes = [
        commit(&key("g", "tópic", u32::MAX), i64::MIN),
        OffsetChange::Delete(key("", "", 0)),
        OffsetChange::DeleteGroup {
            namespace: "/ns".into(),
            group: "grp".into(),
        },
    ];
    for c in changes {
        let mut buf = Vec::new();
        let size = codec::put(&mut buf, &c);
        let f = crate::frame::read(&buf).unwrap();
        assert_eq!(f.size, size);
        assert_eq!(codec::decode(f.kind, f.payload), Ok(c));
        for cut in 0..f.payload.len() {
            assert!(codec::decode(f.kind, &f.payload[..cut]).is_err());
        }
        let mut longer = f.payload.to_vec();
        longer.push(0);
        assert!(codec::decode(f.kind, &longer).is_err());
        assert!(codec::decode(99, f.payload).is_err());
    }
}
