//! Encryption at rest: message records (bodies and headers) are sealed
//! with AES-256-GCM under a data key of their segment; data keys are
//! wrapped by the master key (envelope encryption, as KMS does) and kept
//! in `keys.json` beside the segments. Rotating the master key re-wraps
//! that file and touches no segment. Topology records stay readable.
//!
//! A sealed record is framed with kind [`SEALED`]: the inner record's kind,
//! a random 96-bit nonce, then the ciphertext with its tag. Its location
//! (segment and offset) and inner kind are the associated data: a record
//! copied elsewhere, or relabelled, does not open.
//!
//! A new segment's data key is made in memory when its first message is
//! sealed; the journal's writer saves `keys.json` before it writes any
//! record ([`Keyring::persist`]), so no file I/O happens on the append path
//! and a key is on disk before a record sealed with it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// The frame kind of a sealed record.
pub const SEALED: u8 = 0x7f;

const KEYS_FILE: &str = "keys.json";
/// Sealed with the master key: opening it proves the key is the one the
/// data keys were wrapped with, even before any segment exists.
const CHECK: &[u8] = b"ferry master key check";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{0}")]
    Key(String),
    #[error("keys file {path}: {detail}")]
    File { path: PathBuf, detail: String },
    #[error("a sealed record does not open (damaged, or another key)")]
    Open,
    #[error("segment {0} has no data key in keys.json")]
    NoDataKey(u64),
}

/// The master key: 32 bytes, given as 64 hex digits or base64 (or, in a
/// file, also as the raw bytes).
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn parse(text: &[u8]) -> Result<Self, SealError> {
        let bad = || {
            SealError::Key(
                "an encryption key is 32 bytes: 64 hex digits, base64, or the raw bytes".into(),
            )
        };
        // Raw bytes only if they do not read as text: a 32-character
        // passphrase is not a key.
        if let Ok(raw) = <[u8; 32]>::try_from(text)
            && !raw.iter().all(|b| b.is_ascii_graphic() || *b == b' ')
        {
            return Ok(MasterKey(raw));
        }
        let s = std::str::from_utf8(text).map_err(|_| bad())?.trim();
        let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| bad())?
        } else {
            STANDARD.decode(s).map_err(|_| bad())?
        };
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(MasterKey)
            .map_err(|_| bad())
    }

    /// A new random key (what `ferry encryption new-key` prints).
    pub fn generate() -> Result<Self, SealError> {
        let mut k = [0u8; 32];
        SystemRandom::new()
            .fill(&mut k)
            .map_err(|_| SealError::Key("no randomness".into()))?;
        Ok(MasterKey(k))
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn aead(key: &[u8; 32]) -> LessSafeKey {
    // A 32-byte key is what AES-256-GCM takes: this cannot fail.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).unwrap_or_else(|_| unreachable!()))
}

/// nonce || ciphertext || tag.
fn seal_with(key: &LessSafeKey, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SealError::Key("no randomness".into()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + 16);
    out.extend_from_slice(&nonce);
    let mut body = plain.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut body,
    )
    .map_err(|_| SealError::Open)?;
    out.extend_from_slice(&body);
    Ok(out)
}

fn open_with(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    if sealed.len() < NONCE_LEN {
        return Err(SealError::Open);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
    let mut body = body.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(aad), &mut body)
        .map_err(|_| SealError::Open)?;
    Ok(plain.to_vec())
}

#[derive(Default, Serialize, Deserialize)]
struct KeysFile {
    check: String,
    /// Segment id -> its data key, wrapped by the master key (base64).
    segments: HashMap<u64, String>,
}

/// The data keys of a journal, unwrapped in memory.
pub struct Keyring {
    path: PathBuf,
    master: LessSafeKey,
    keys: Mutex<Keys>,
}

struct Keys {
    file: KeysFile,
    open: HashMap<u64, LessSafeKey>,
    /// Changed since last saved.
    dirty: bool,
}

/// The associated data of a sealed record.
fn record_aad(segment: u64, offset: u64, kind: u8) -> [u8; 17] {
    let mut aad = [0u8; 17];
    aad[..8].copy_from_slice(&segment.to_le_bytes());
    aad[8..16].copy_from_slice(&offset.to_le_bytes());
    aad[16] = kind;
    aad
}

impl Keyring {
    /// Whether the journal in `dir` has been encrypted.
    pub fn exists(dir: &Path) -> bool {
        dir.join(KEYS_FILE).exists()
    }

    /// Opens the journal's keys with `master` (made on first use). A key
    /// that did not wrap them is an error that says so.
    pub fn open(dir: &Path, master: &MasterKey) -> Result<Keyring, SealError> {
        let path = dir.join(KEYS_FILE);
        let aead_master = aead(&master.0);
        let file_err = |detail: String| SealError::File {
            path: path.clone(),
            detail,
        };
        let (file, keys) = if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| file_err(e.to_string()))?;
            let file: KeysFile =
                serde_json::from_str(&text).map_err(|e| file_err(e.to_string()))?;
            let check = STANDARD
                .decode(&file.check)
                .map_err(|e| file_err(e.to_string()))?;
            if open_with(&aead_master, b"check", &check).ok().as_deref() != Some(CHECK) {
                return Err(SealError::Key(format!(
                    "the encryption key does not open {} (a different key was used)",
                    path.display()
                )));
            }
            let mut keys = HashMap::new();
            for (seg, wrapped) in &file.segments {
                let wrapped = STANDARD
                    .decode(wrapped)
                    .map_err(|e| file_err(e.to_string()))?;
                let raw = open_with(&aead_master, &seg.to_le_bytes(), &wrapped).map_err(|_| {
                    file_err(format!("the data key of segment {seg} does not open"))
                })?;
                let raw = <[u8; 32]>::try_from(raw.as_slice()).map_err(|_| {
                    file_err(format!("the data key of segment {seg} is not 32 bytes"))
                })?;
                keys.insert(*seg, aead(&raw));
            }
            (file, keys)
        } else {
            let check = seal_with(&aead_master, b"check", CHECK)?;
            let file = KeysFile {
                check: STANDARD.encode(check),
                segments: HashMap::new(),
            };
            save(&path, &file).map_err(file_err)?;
            (file, HashMap::new())
        };
        Ok(Keyring {
            path,
            master: aead_master,
            keys: Mutex::new(Keys {
                file,
                open: keys,
                dirty: false,
            }),
        })
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes sure segment `id` has a data key: a new random one, in memory
    /// until [`Keyring::persist`].
    pub fn ensure(&self, id: u64) -> Result<(), SealError> {
        let mut k = self.keys();
        if k.open.contains_key(&id) {
            return Ok(());
        }
        let mut raw = [0u8; 32];
        SystemRandom::new()
            .fill(&mut raw)
            .map_err(|_| SealError::Key("no randomness".into()))?;
        let wrapped = seal_with(&self.master, &id.to_le_bytes(), &raw)?;
        k.file.segments.insert(id, STANDARD.encode(wrapped));
        k.open.insert(id, aead(&raw));
        k.dirty = true;
        Ok(())
    }

    /// Whether segment `id` has a data key (its message records are sealed).
    pub fn has(&self, id: u64) -> bool {
        self.keys().open.contains_key(&id)
    }

    /// Forgets the keys of deleted segments (what they sealed is gone with
    /// them, and cannot be opened from an old copy of this file's future).
    pub fn forget(&self, ids: &[u64]) {
        let mut k = self.keys();
        for id in ids {
            if k.file.segments.remove(id).is_some() {
                k.open.remove(id);
                k.dirty = true;
            }
        }
    }

    /// Saves `keys.json` if it changed (the writer calls this before it
    /// writes records).
    pub fn persist(&self) -> Result<(), SealError> {
        let mut k = self.keys();
        if !k.dirty {
            return Ok(());
        }
        save(&self.path, &k.file).map_err(|detail| SealError::File {
            path: self.path.clone(),
            detail,
        })?;
        k.dirty = false;
        Ok(())
    }

    /// Seals a record of `kind` to be written at (`segment`, `offset`).
    pub fn seal(
        &self,
        segment: u64,
        offset: u64,
        kind: u8,
        plain: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let k = self.keys();
        let key = k.open.get(&segment).ok_or(SealError::NoDataKey(segment))?;
        seal_with(key, &record_aad(segment, offset, kind), plain)
    }

    pub fn open_record(
        &self,
        segment: u64,
        offset: u64,
        kind: u8,
        sealed: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let k = self.keys();
        let key = k.open.get(&segment).ok_or(SealError::NoDataKey(segment))?;
        open_with(key, &record_aad(segment, offset, kind), sealed)
    }

    /// Wraps every data key with `new` instead; segments are not touched.
    pub fn rotate(dir: &Path, old: &MasterKey, new: &MasterKey) -> Result<usize, SealError> {
        let ring = Keyring::open(dir, old)?;
        let new_master = aead(&new.0);
        let k = ring.keys();
        let mut file = KeysFile {
            check: STANDARD.encode(seal_with(&new_master, b"check", CHECK)?),
            segments: HashMap::new(),
        };
        for (seg, wrapped) in &k.file.segments {
            let wrapped = STANDARD.decode(wrapped).map_err(|e| SealError::File {
                path: ring.path.clone(),
                detail: format!("segment {seg}: {e}"),
            })?;
            let raw = open_with(&ring.master, &seg.to_le_bytes(), &wrapped)?;
            let rewrapped = seal_with(&new_master, &seg.to_le_bytes(), &raw)?;
            file.segments.insert(*seg, STANDARD.encode(rewrapped));
        }
        save(&ring.path, &file).map_err(|detail| SealError::File {
            path: ring.path.clone(),
            detail,
        })?;
        Ok(file.segments.len())
    }
}

/// Written whole beside the file and renamed into place, then the
/// directory synced: a crash leaves the old keys or the new, and a data
/// key is on disk before a record sealed with it is.
fn save(path: &Path, file: &KeysFile) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = serde_json::to_string_pretty(file).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| e.to_string())?;
    f.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    f.sync_all().map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_records_open_only_where_and_as_what_they_were_sealed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let master = MasterKey::generate().expect("key");
        let ring = Keyring::open(dir.path(), &master).expect("open");
        ring.ensure(1).expect("key 1");
        ring.ensure(2).expect("key 2");
        ring.persist().expect("saved");
        let sealed = ring.seal(1, 32, 3, b"secret body").expect("seal");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        let open = |r: &Keyring, seg, off, kind| r.open_record(seg, off, kind, &sealed);
        assert_eq!(open(&ring, 1, 32, 3).expect("open"), b"secret body");
        assert!(open(&ring, 2, 32, 3).is_err(), "not in another segment");
        assert!(open(&ring, 1, 64, 3).is_err(), "nor at another offset");
        assert!(open(&ring, 1, 32, 4).is_err(), "nor as another kind");

        // Reopened from the file: the same data keys.
        let again = Keyring::open(dir.path(), &master).expect("reopen");
        assert_eq!(open(&again, 1, 32, 3).expect("open"), b"secret body");

        // Another master key is refused, clearly.
        let other = MasterKey::generate().expect("key");
        let err = Keyring::open(dir.path(), &other)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("does not open")));

        // Rotation: the new key opens the same segments, the old does not.
        assert_eq!(
            Keyring::rotate(dir.path(), &master, &other).expect("rotate"),
            2
        );
        let rotated = Keyring::open(dir.path(), &other).expect("new key");
        assert_eq!(open(&rotated, 1, 32, 3).expect("open"), b"secret body");
        assert!(Keyring::open(dir.path(), &master).is_err());

        // Deleted segments' keys go.
        rotated.forget(&[1]);
        rotated.persist().expect("saved");
        assert!(!Keyring::open(dir.path(), &other).expect("open").has(1));
    }

    #[test]
    fn keys_parse_from_hex_base64_and_raw_bytes() {
        let k = MasterKey::generate().expect("key");
        let hex = k.to_hex();
        assert_eq!(MasterKey::parse(hex.as_bytes()).expect("hex").0, k.0);
        let b64 = STANDARD.encode(k.0);
        assert_eq!(MasterKey::parse(b64.as_bytes()).expect("b64").0, k.0);
        let mut raw = k.0;
        raw[0] = 0; // not text
        assert_eq!(MasterKey::parse(&raw).expect("raw").0, raw);
        assert!(MasterKey::parse(b"short").is_err());
        assert!(MasterKey::parse(b"a passphrase of thirty-two chars").is_err());
    }
}
