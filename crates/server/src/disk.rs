//! The disk free-space limit: below it, the broker's resource alarm is
//! raised, so publishers wait instead of filling the disk until writes
//! fail; it clears once free space is 10% above the limit again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::alarms::{Alarms, Resource};

/// How often free space is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// RabbitMQ's default `disk_free_limit`.
pub const DEFAULT_FREE_LIMIT: u64 = 50 * 1024 * 1024;

/// Bytes free for an unprivileged writer on the file system holding `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` is written by
    // statvfs before it is read (only when it returns 0).
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    // The fields' types differ between platforms (u32 on some).
    #[allow(clippy::unnecessary_cast)]
    let (blocks, size) = (st.f_bavail as u64, st.f_frsize as u64);
    Some(blocks.saturating_mul(size))
}

/// One look: raises or clears the disk alarm. Returns whether it is up.
fn check(alarms: &Alarms, dir: &Path, limit: u64, up: bool) -> bool {
    let Some(free) = free_bytes(dir) else {
        return up;
    };
    let mib = |b: u64| b / (1024 * 1024);
    if !up && free < limit {
        alarms.set(
            Resource::Disk,
            Some(format!(
                "disk: {} MiB free, under the limit of {} MiB",
                mib(free),
                mib(limit)
            )),
        );
        true
    } else if up && free > limit.saturating_add(limit / 10) {
        alarms.set(Resource::Disk, None);
        false
    } else {
        up
    }
}

pub fn spawn(alarms: Arc<Alarms>, dir: PathBuf, limit: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut up = false;
        loop {
            tick.tick().await;
            up = check(&alarms, &dir, limit, up);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_read_and_the_alarm_follows_it() {
        let dir = std::env::temp_dir();
        assert!(free_bytes(&dir).is_some_and(|b| b > 0));
        let broker = ferry_core::Broker::in_memory();
        let alarms = Alarms::new(Arc::clone(&broker));
        assert!(
            check(&alarms, &dir, u64::MAX, false),
            "never that much free"
        );
        assert!(
            broker
                .alarm()
                .borrow()
                .as_deref()
                .is_some_and(|r| r.starts_with("disk"))
        );
        assert!(!check(&alarms, &dir, 0, true), "cleared");
        assert!(broker.alarm().borrow().is_none());
    }
}
