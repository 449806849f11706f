//! Recently checked admin logins. Argon2 makes each password check cost
//! tens of milliseconds of CPU on purpose; the console calls the API
//! several times every few seconds, so a successful check is remembered
//! for a minute. The key is a hash of the credentials and the client's
//! address (a loopback-only user stays so): the password itself is never
//! kept. Refusals are not remembered, so a changed config takes effect on
//! the next try.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long a successful login is trusted without checking the password.
const TTL: Duration = Duration::from_secs(60);
/// Past this many remembered logins, the oldest are forgotten.
const MAX: usize = 1024;

#[derive(Default)]
pub struct Logins {
    seen: Mutex<HashMap<[u8; 32], (Instant, bool)>>,
    /// Bumped when users change: a check that began before is not kept.
    generation: AtomicU64,
}

fn key(name: &str, password: &str, peer: IpAddr) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [
        name.as_bytes(),
        password.as_bytes(),
        peer.to_string().as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

impl Logins {
    /// Whether the user is an administrator, if these credentials were
    /// accepted from this address within the last minute.
    pub fn recall(&self, name: &str, password: &str, peer: IpAddr) -> Option<bool> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.get(&key(name, password, peer))
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, admin)| *admin)
    }

    /// Forgets every login (a user changed: each must be checked again).
    pub fn forget_all(&self) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::SeqCst);
        seen.clear();
    }

    /// Taken before a check, given back to [`Logins::remember`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Remembers a successful check that began at `generation` (ignored if
    /// users changed since).
    pub fn remember(&self, name: &str, password: &str, peer: IpAddr, admin: bool, generation: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if seen.len() >= MAX {
            seen.retain(|_, (at, _)| at.elapsed() < TTL);
            if seen.len() >= MAX {
                seen.clear();
            }
        }
        seen.insert(key(name, password, peer), (Instant::now(), admin));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_per_credentials_and_address() {
        let l = Logins::default();
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let there: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(l.recall("a", "pw", here), None);
        l.remember("a", "pw", here, true, l.generation());
        assert_eq!(l.recall("a", "pw", here), Some(true));
        assert_eq!(l.recall("a", "other", here), None);
        assert_eq!(l.recall("a", "pw", there), None);
        // The boundary between name and password is part of the key.
        assert_eq!(l.recall("ap", "w", here), None);
        // A check that began before users changed is not kept.
        let before = l.generation();
        l.forget_all();
        l.remember("a", "pw", here, true, before);
        assert_eq!(l.recall("a", "pw", here), None);
    }
}
