//! The offsets log when the disk refuses a write: the commits of that
//! round fail, the log is fenced (every later commit fails, even once
//! writes would work again: the file's end is unknown), and a reopen trims
//! the half-written tail and keeps what was confirmed.
//!
//! The refusal is real: this test binary (one test, so nothing else runs in
//! the process) lowers its own RLIMIT_FSIZE, so writes past it fail with
//! EFBIG, then raises it again.

use ferry_core::group::{Committed, OffsetChange, OffsetKey, OffsetStore};
use ferry_storage::FsyncPolicy;
use ferry_storage::offsets::OffsetsLog;

mod support;
use support::set_file_size_limit;

fn commit(partition: u32, metadata: &str) -> OffsetChange {
    let key = OffsetKey {
        namespace: "/".into(),
        group: "g".into(),
        topic: "t".into(),
        partition,
    };
    OffsetChange::Commit(
        key,
        Committed {
            offset: 7,
            leader_epoch: -1,
            metadata: metadata.into(),
            commit_ms: 0,
        },
    )
}

#[tokio::test]
async fn refused_offsets_writes_fail_and_fence_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = OffsetsLog::open(dir.path(), FsyncPolicy::Always, false).expect("open");
    log.record(vec![commit(0, "before")])
        .wait()
        .await
        .expect("durable before the limit");
    let len = std::fs::metadata(dir.path().join("offsets.log"))
        .expect("len")
        .len();

    // Room for part of the next record only.
    set_file_size_limit(len + 100);
    let refused = log.record(vec![commit(1, &"m".repeat(1000))]);
    assert!(refused.wait().await.is_err(), "a refused write fails");
    set_file_size_limit(libc::RLIM_INFINITY);
    let fenced = log.record(vec![commit(2, "small")]);
    assert!(fenced.wait().await.is_err(), "fenced until reopened");
    drop(log);
    let torn = std::fs::metadata(dir.path().join("offsets.log"))
        .expect("len")
        .len();
    assert_eq!(torn, len + 100, "the refused write left part of its frame");

    let log = OffsetsLog::open(dir.path(), FsyncPolicy::Always, false).expect("reopen");
    let keys: Vec<u32> = log
        .load()
        .expect("load")
        .into_iter()
        .map(|(k, _)| k.partition)
        .collect();
    assert_eq!(
        keys,
        [0],
        "the torn tail is gone, the confirmed commit kept"
    );
    log.record(vec![commit(3, "after")])
        .wait()
        .await
        .expect("writes again after the reopen");
}
