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
//! A queue may name its own master key ([`SEALED_NAMED`] records, data keys
//! per segment and key): its messages then open only with that key, and
//! destroying the key once the queue is gone shreds whatever copies of its
//! messages remain. A key that no longer wraps any data key may be left out
//! at the next start and is forgotten.
//!
//! A new segment's data key is made in memory when its first message is
//! sealed; the journal's writer saves `keys.json` before it writes any
//! record ([`Keyring::persist`]), so no file I/O happens on the append path
//! and a key is on disk before a record sealed with it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// The frame kind of a record sealed under the journal's key: the inner
/// kind, then nonce, ciphertext and tag.
pub const SEALED: u8 = 0x7f;
/// The frame kind of a record sealed under a queue's own key: the inner
/// kind, the key's name (a length byte, then the name), then as [`SEALED`].
pub const SEALED_NAMED: u8 = 0x7e;

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
    #[error("no key named '{0}' was given")]
    NoMasterKey(String),
}

/// Whether `name` may name a queue's key: 1 to 64 of letters, digits and
/// `-_./` (it is written in each record it seals).
pub fn valid_key_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
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

/// The data keys one master key wraps, as `keys.json` holds them.
#[derive(Clone, Default, Serialize, Deserialize)]
struct Wrapped {
    /// [`CHECK`] sealed with the master key (base64).
    check: String,
    /// Segment id -> its data key, wrapped by the master key (base64).
    segments: HashMap<u64, String>,
}

/// `keys.json`. The journal's own key is at the top level (as files made
/// before queue keys existed have it); queue keys are under `named`.
#[derive(Default, Serialize, Deserialize)]
struct KeysFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    check: Option<String>,
    #[serde(default)]
    segments: HashMap<u64, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    named: BTreeMap<String, Wrapped>,
}

impl KeysFile {
    /// By name, the journal's key as "" (key names are never empty).
    fn into_map(self) -> BTreeMap<String, Wrapped> {
        let mut map = self.named;
        if let Some(check) = self.check {
            map.insert(
                String::new(),
                Wrapped {
                    check,
                    segments: self.segments,
                },
            );
        }
        map
    }

    fn from_map(map: BTreeMap<String, Wrapped>) -> KeysFile {
        let mut file = KeysFile::default();
        for (name, w) in map {
            if name.is_empty() {
                file.check = Some(w.check);
                file.segments = w.segments;
            } else {
                file.named.insert(name, w);
            }
        }
        file
    }
}

/// One master key, with the data keys it wraps.
struct Master {
    key: LessSafeKey,
    wrapped: Wrapped,
    /// Unwrapped, by segment.
    data: HashMap<u64, LessSafeKey>,
}

/// The data keys of a journal, unwrapped in memory.
pub struct Keyring {
    path: PathBuf,
    /// The master keys' names, fixed once open ("" for the journal's own):
    /// asked on every append, so not behind the lock.
    names: std::collections::BTreeSet<String>,
    keys: Mutex<Keys>,
    /// Serialises saves of `keys.json` (taken without `keys`, which appends
    /// need while a save syncs the file).
    saving: Mutex<()>,
}

struct Keys {
    /// By name; the journal's own key is "".
    masters: BTreeMap<String, Master>,
    /// Bumped on every change; `saved` is the one on disk.
    generation: u64,
    saved: u64,
}

impl Keys {
    fn data_key(&self, name: &str, segment: u64) -> Result<&LessSafeKey, SealError> {
        self.masters
            .get(name)
            .and_then(|m| m.data.get(&segment))
            .ok_or(SealError::NoDataKey(segment))
    }

    /// Makes sure segment `id` has a data key under key `name`: a new
    /// random one, in memory until saved.
    fn ensure(&mut self, name: &str, id: u64) -> Result<&LessSafeKey, SealError> {
        let m = self
            .masters
            .get_mut(name)
            .ok_or_else(|| SealError::NoMasterKey(name.to_owned()))?;
        if !m.data.contains_key(&id) {
            let mut raw = [0u8; 32];
            SystemRandom::new()
                .fill(&mut raw)
                .map_err(|_| SealError::Key("no randomness".into()))?;
            let wrapped = seal_with(&m.key, &wrap_aad(id, name), &raw)?;
            m.wrapped.segments.insert(id, STANDARD.encode(wrapped));
            m.data.insert(id, aead(&raw));
            self.generation += 1;
        }
        self.data_key(name, id)
    }
}

/// The journal's key for `None`; a queue key's name is never empty (an
/// empty one names nothing, not the journal's key).
fn slot(name: Option<&str>) -> Option<&str> {
    match name {
        None => Some(""),
        Some("") => None,
        Some(n) => Some(n),
    }
}

/// What a key's name reads as in messages.
fn describe(name: &str) -> String {
    if name.is_empty() {
        "the journal's encryption key".into()
    } else {
        format!("the queue key '{name}'")
    }
}

/// The associated data of a data key wrapped for `segment` (the journal's
/// key: the segment alone, as before queue keys).
fn wrap_aad(segment: u64, name: &str) -> Vec<u8> {
    [&segment.to_le_bytes()[..], name.as_bytes()].concat()
}

fn check_aad(name: &str) -> Vec<u8> {
    [&b"check"[..], name.as_bytes()].concat()
}

/// The longest associated data of a record: location, kind, a key's name.
const MAX_AAD: usize = 17 + 64;

/// The associated data of a sealed record, in `buf` (no allocation per
/// record). Names are at most 64 bytes; a longer one is cut, and then
/// opens nothing sealed under its full name.
fn record_aad<'a>(
    buf: &'a mut [u8; MAX_AAD],
    segment: u64,
    offset: u64,
    kind: u8,
    name: &str,
) -> &'a [u8] {
    buf[..8].copy_from_slice(&segment.to_le_bytes());
    buf[8..16].copy_from_slice(&offset.to_le_bytes());
    buf[16] = kind;
    let n = name.len().min(64);
    buf[17..17 + n].copy_from_slice(&name.as_bytes()[..n]);
    &buf[..17 + n]
}

fn decode_b64(text: &str) -> Result<Vec<u8>, String> {
    STANDARD.decode(text).map_err(|e| e.to_string())
}

impl Master {
    /// Opens `wrapped` with `key`: its check first, so a wrong key is told
    /// apart from a damaged file.
    fn open(name: &str, key: &MasterKey, wrapped: Wrapped) -> Result<Master, String> {
        let aead_key = aead(&key.0);
        let check = decode_b64(&wrapped.check)?;
        if open_with(&aead_key, &check_aad(name), &check)
            .ok()
            .as_deref()
            != Some(CHECK)
        {
            return Err(format!(
                "{} does not open it (a different key was used)",
                describe(name)
            ));
        }
        let mut data = HashMap::new();
        for (seg, w) in &wrapped.segments {
            let raw = open_with(&aead_key, &wrap_aad(*seg, name), &decode_b64(w)?)
                .map_err(|_| format!("the data key of segment {seg} does not open"))?;
            let raw = <[u8; 32]>::try_from(raw.as_slice())
                .map_err(|_| format!("the data key of segment {seg} is not 32 bytes"))?;
            data.insert(*seg, aead(&raw));
        }
        Ok(Master {
            key: aead_key,
            wrapped,
            data,
        })
    }

    /// A master key that wraps nothing yet.
    fn new(name: &str, key: &MasterKey) -> Result<Master, SealError> {
        let aead_key = aead(&key.0);
        let check = seal_with(&aead_key, &check_aad(name), CHECK)?;
        Ok(Master {
            key: aead_key,
            wrapped: Wrapped {
                check: STANDARD.encode(check),
                segments: HashMap::new(),
            },
            data: HashMap::new(),
        })
    }
}

impl Keyring {
    /// Whether the journal in `dir` has ever been encrypted.
    pub fn exists(dir: &Path) -> bool {
        dir.join(KEYS_FILE).exists()
    }

    /// Opens the journal's keys with the journal's master key and the
    /// queues' keys by name (each made on first use); none given and no
    /// keys on disk: `None`, the journal is not encrypted. A key that did
    /// not wrap its data keys, or one missing that still wraps some, is an
    /// error that says so. The journal's own key, once used, is always
    /// needed: leaving it out by mistake must not turn encryption off.
    /// `on_disk`: the segments that exist (set-aside ones included); data
    /// keys of segments older than all of them are dropped first. Segments
    /// are deleted oldest first and ids never reused, so those are deleted
    /// ones whose keys a crash kept in this file; a segment missing from
    /// the middle (restored later, or moved away by hand) keeps its keys.
    pub fn open(
        dir: &Path,
        journal: Option<&MasterKey>,
        queue_keys: &BTreeMap<String, Arc<MasterKey>>,
        on_disk: &[u64],
    ) -> Result<Option<Keyring>, SealError> {
        let path = dir.join(KEYS_FILE);
        let file_err = |detail: String| SealError::File {
            path: path.clone(),
            detail,
        };
        if let Some(bad) = queue_keys.keys().find(|n| !valid_key_name(n)) {
            return Err(SealError::Key(format!(
                "'{bad}' cannot name a key: use 1 to 64 letters, digits and -_./"
            )));
        }
        let keys_on_disk = if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| file_err(e.to_string()))?;
            let file: KeysFile =
                serde_json::from_str(&text).map_err(|e| file_err(e.to_string()))?;
            file.into_map()
        } else {
            BTreeMap::new()
        };
        let given = |name: &str| -> Option<&MasterKey> {
            if name.is_empty() {
                journal
            } else {
                queue_keys.get(name).map(|k| k.as_ref())
            }
        };
        let mut dirty = !path.exists();
        let mut masters = BTreeMap::new();
        for (name, mut wrapped) in keys_on_disk {
            let before = wrapped.segments.len();
            let oldest = on_disk.iter().min().copied().unwrap_or(u64::MAX);
            wrapped.segments.retain(|id, _| *id >= oldest);
            dirty |= wrapped.segments.len() != before;
            match given(&name) {
                Some(key) => {
                    let m = Master::open(&name, key, wrapped).map_err(file_err)?;
                    masters.insert(name, m);
                }
                None if name.is_empty() => {
                    return Err(SealError::Key(format!(
                        "the journal in {} is encrypted: it opens only with its encryption key",
                        dir.display()
                    )));
                }
                None if wrapped.segments.is_empty() => {
                    tracing::info!(key = %name, "a queue key that seals nothing any more was not given: forgotten");
                    dirty = true;
                }
                None => {
                    let mut segs: Vec<_> = wrapped.segments.keys().copied().collect();
                    segs.sort_unstable();
                    return Err(SealError::Key(format!(
                        "segments {segs:?} of {} hold messages sealed with the queue key '{name}', which was not given",
                        dir.display()
                    )));
                }
            }
        }
        let wanted = journal
            .map(|k| (String::new(), k))
            .into_iter()
            .chain(queue_keys.iter().map(|(n, k)| (n.clone(), k.as_ref())));
        for (name, key) in wanted {
            if let std::collections::btree_map::Entry::Vacant(slot) = masters.entry(name) {
                let m = Master::new(slot.key(), key)?;
                slot.insert(m);
                dirty = true;
            }
        }
        let nothing = masters.is_empty();
        if nothing && !path.exists() {
            return Ok(None);
        }
        let ring = Keyring {
            path,
            names: masters.keys().cloned().collect(),
            keys: Mutex::new(Keys {
                masters,
                generation: u64::from(dirty),
                saved: 0,
            }),
            saving: Mutex::new(()),
        };
        ring.persist()?;
        // Every key forgotten and none given: nothing is sealed any more.
        Ok((!nothing).then_some(ring))
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a master key of this name (`None`: the journal's) was given.
    pub fn has_key(&self, name: Option<&str>) -> bool {
        slot(name).is_some_and(|n| self.names.contains(n))
    }

    /// Makes sure segment `id` has a data key under key `name`: a new
    /// random one, in memory until [`Keyring::persist`]. ([`Keyring::seal`]
    /// does this itself.)
    pub fn ensure(&self, name: Option<&str>, id: u64) -> Result<(), SealError> {
        let name = slot(name).ok_or_else(|| SealError::NoMasterKey(String::new()))?;
        self.keys().ensure(name, id).map(|_| ())
    }

    /// Whether segment `id` has a data key under the journal's own key (its
    /// messages are sealed unless their queue names a key).
    pub fn has(&self, id: u64) -> bool {
        self.has_data_key(None, id)
    }

    pub fn has_data_key(&self, name: Option<&str>, id: u64) -> bool {
        slot(name).is_some_and(|n| self.keys().data_key(n, id).is_ok())
    }

    /// Forgets the data keys of deleted segments (what they sealed is gone
    /// with them, and cannot be opened from an old copy of this file's future).
    pub fn forget(&self, ids: &[u64]) {
        let mut k = self.keys();
        let mut changed = false;
        for m in k.masters.values_mut() {
            for id in ids {
                if m.wrapped.segments.remove(id).is_some() {
                    m.data.remove(id);
                    changed = true;
                }
            }
        }
        if changed {
            k.generation += 1;
        }
    }

    /// Saves `keys.json` if it changed (the writer calls this before it
    /// writes records). The file is written and synced without holding the
    /// keys, which appends need; a key made meanwhile is saved next time.
    pub fn persist(&self) -> Result<(), SealError> {
        let _one_at_a_time = self.saving.lock().unwrap_or_else(PoisonError::into_inner);
        let (generation, file) = {
            let k = self.keys();
            if k.generation == k.saved {
                return Ok(());
            }
            let file = KeysFile::from_map(
                k.masters
                    .iter()
                    .map(|(name, m)| (name.clone(), m.wrapped.clone()))
                    .collect(),
            );
            (k.generation, file)
        };
        save(&self.path, &file).map_err(|detail| SealError::File {
            path: self.path.clone(),
            detail,
        })?;
        let mut k = self.keys();
        k.saved = k.saved.max(generation);
        Ok(())
    }

    /// Seals a record of `kind` to be written at (`segment`, `offset`) under
    /// key `name`'s data key of that segment (made now if it has none).
    pub fn seal(
        &self,
        name: Option<&str>,
        segment: u64,
        offset: u64,
        kind: u8,
        plain: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let name = slot(name).ok_or_else(|| SealError::NoMasterKey(String::new()))?;
        let mut aad = [0u8; MAX_AAD];
        let aad = record_aad(&mut aad, segment, offset, kind, name);
        seal_with(self.keys().ensure(name, segment)?, aad, plain)
    }

    /// Seals `plain` under segment `segment`'s data key of the journal's
    /// own key (which it must have), bound to `aad`, which the caller
    /// builds (a stream log binds each batch's clear header and place).
    /// The key is copied out, so sealing holds no lock.
    pub fn seal_bound(&self, segment: u64, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, SealError> {
        // The segment's key was made and saved when it was created: one
        // made here would never be saved.
        let key = self.keys().data_key("", segment)?.clone();
        seal_with(&key, aad, plain)
    }

    /// Opens what [`Keyring::seal_bound`] sealed, with the same `aad`.
    pub fn open_bound(
        &self,
        segment: u64,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let key = self.keys().data_key("", segment)?.clone();
        open_with(&key, aad, sealed)
    }

    pub fn open_record(
        &self,
        name: Option<&str>,
        segment: u64,
        offset: u64,
        kind: u8,
        sealed: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let name = slot(name).ok_or(SealError::NoDataKey(segment))?;
        let mut aad = [0u8; MAX_AAD];
        let aad = record_aad(&mut aad, segment, offset, kind, name);
        open_with(self.keys().data_key(name, segment)?, aad, sealed)
    }

    /// Wraps the data keys of key `name` (`None`: the journal's) with `new`
    /// instead; no segment is touched, nor any other key.
    pub fn rotate(
        dir: &Path,
        name: Option<&str>,
        old: &MasterKey,
        new: &MasterKey,
    ) -> Result<usize, SealError> {
        let name = slot(name).ok_or_else(|| SealError::Key("a key name is not empty".into()))?;
        let path = dir.join(KEYS_FILE);
        let file_err = |detail: String| SealError::File {
            path: path.clone(),
            detail,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| file_err(e.to_string()))?;
        let file: KeysFile = serde_json::from_str(&text).map_err(|e| file_err(e.to_string()))?;
        let mut map = file.into_map();
        let wrapped = map.remove(name).ok_or_else(|| {
            SealError::Key(format!("{} is not in {}", describe(name), path.display()))
        })?;
        let m = Master::open(name, old, wrapped).map_err(file_err)?;
        let mut rotated = Master::new(name, new)?;
        for (seg, w) in &m.wrapped.segments {
            let raw = open_with(
                &m.key,
                &wrap_aad(*seg, name),
                &decode_b64(w).map_err(file_err)?,
            )?;
            let rewrapped = seal_with(&rotated.key, &wrap_aad(*seg, name), &raw)?;
            rotated
                .wrapped
                .segments
                .insert(*seg, STANDARD.encode(rewrapped));
        }
        let n = rotated.wrapped.segments.len();
        // The other keys' entries go back as they were.
        map.insert(name.to_owned(), rotated.wrapped);
        let out = KeysFile::from_map(map);
        save(&path, &out).map_err(file_err)?;
        Ok(n)
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

    fn no_queue_keys() -> BTreeMap<String, Arc<MasterKey>> {
        BTreeMap::new()
    }

    fn open_ring(
        dir: &Path,
        journal: Option<&MasterKey>,
        named: &[(&str, &Arc<MasterKey>)],
    ) -> Result<Keyring, SealError> {
        let named = named
            .iter()
            .map(|(n, k)| ((*n).to_owned(), Arc::clone(k)))
            .collect();
        Keyring::open(dir, journal, &named, &[1, 2]).map(|r| r.expect("a keyring"))
    }

    #[test]
    fn sealed_records_open_only_where_and_as_what_they_were_sealed() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(
            Keyring::open(dir.path(), None, &no_queue_keys(), &[1, 2])
                .expect("no keys")
                .is_none(),
            "no key, no file: not encrypted"
        );
        let master = MasterKey::generate().expect("key");
        let ring = open_ring(dir.path(), Some(&master), &[]).expect("open");
        ring.ensure(None, 1).expect("key 1");
        ring.ensure(None, 2).expect("key 2");
        ring.persist().expect("saved");
        let sealed = ring.seal(None, 1, 32, 3, b"secret body").expect("seal");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        let open = |r: &Keyring, seg, off, kind| r.open_record(None, seg, off, kind, &sealed);
        assert_eq!(open(&ring, 1, 32, 3).expect("open"), b"secret body");
        assert!(open(&ring, 2, 32, 3).is_err(), "not in another segment");
        assert!(open(&ring, 1, 64, 3).is_err(), "nor at another offset");
        assert!(open(&ring, 1, 32, 4).is_err(), "nor as another kind");

        // Reopened from the file: the same data keys.
        let again = open_ring(dir.path(), Some(&master), &[]).expect("reopen");
        assert_eq!(open(&again, 1, 32, 3).expect("open"), b"secret body");

        // Another master key is refused, clearly; so is none.
        let other = MasterKey::generate().expect("key");
        let err = |r: Result<Keyring, SealError>| r.err().map(|e| e.to_string());
        assert!(
            err(open_ring(dir.path(), Some(&other), &[]))
                .is_some_and(|e| e.contains("does not open"))
        );
        assert!(
            err(Keyring::open(dir.path(), None, &no_queue_keys(), &[1, 2])
                .map(|r| r.expect("ring")))
            .is_some_and(|e| e.contains("opens only with its encryption key"))
        );

        // Rotation: the new key opens the same segments, the old does not.
        assert_eq!(
            Keyring::rotate(dir.path(), None, &master, &other).expect("rotate"),
            2
        );
        let rotated = open_ring(dir.path(), Some(&other), &[]).expect("new key");
        assert_eq!(open(&rotated, 1, 32, 3).expect("open"), b"secret body");
        assert!(open_ring(dir.path(), Some(&master), &[]).is_err());

        // Deleted segments' keys go.
        rotated.forget(&[1]);
        rotated.persist().expect("saved");
        assert!(
            !open_ring(dir.path(), Some(&other), &[])
                .expect("open")
                .has(1)
        );
    }

    #[test]
    fn a_queue_key_seals_apart_and_is_needed_while_it_wraps_anything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = MasterKey::generate().expect("key");
        let orders = Arc::new(MasterKey::generate().expect("key"));
        let r = open_ring(dir.path(), Some(&journal), &[("orders", &orders)]).expect("open");
        assert!(r.has_key(Some("orders")) && r.has_key(None) && !r.has_key(Some("x")));
        r.ensure(Some("orders"), 1).expect("data key");
        r.ensure(None, 1).expect("data key");
        assert!(r.has_data_key(Some("orders"), 1) && r.has(1));
        r.persist().expect("saved");
        let sealed = r
            .seal(Some("orders"), 1, 40, 3, b"card 4111")
            .expect("seal");
        assert_eq!(
            r.open_record(Some("orders"), 1, 40, 3, &sealed)
                .expect("opens"),
            b"card 4111"
        );
        assert!(
            r.open_record(None, 1, 40, 3, &sealed).is_err(),
            "not under the journal's key"
        );
        drop(r);

        // Without the queue key, while it wraps a data key: refused, by name.
        let e = open_ring(dir.path(), Some(&journal), &[])
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("'orders'") && e.contains("[1]")));
        // With a different key under that name: refused.
        let wrong = Arc::new(MasterKey::generate().expect("key"));
        assert!(open_ring(dir.path(), Some(&journal), &[("orders", &wrong)]).is_err());

        // Rotating the queue key leaves the journal's alone.
        let orders2 = Arc::new(MasterKey::generate().expect("key"));
        assert_eq!(
            Keyring::rotate(dir.path(), Some("orders"), &orders, &orders2).expect("rotate"),
            1
        );
        let r = open_ring(dir.path(), Some(&journal), &[("orders", &orders2)]).expect("rotated");
        assert_eq!(
            r.open_record(Some("orders"), 1, 40, 3, &sealed)
                .expect("opens"),
            b"card 4111"
        );

        // Once its segments are gone the key may be left out: forgotten.
        r.forget(&[1]);
        r.persist().expect("saved");
        drop(r);
        let r = open_ring(dir.path(), Some(&journal), &[]).expect("opens without it");
        assert!(!r.has_key(Some("orders")));
        drop(r);
        let text = std::fs::read_to_string(dir.path().join(KEYS_FILE)).expect("keys");
        assert!(!text.contains("orders"), "{text}");

        // A segment gone without this file knowing (a crash between the
        // deletion and the save) needs no key either.
        let other = tempfile::tempdir().expect("tempdir");
        let r = open_ring(other.path(), Some(&journal), &[("orders", &orders)]).expect("open");
        r.ensure(Some("orders"), 1).expect("data key");
        r.persist().expect("saved");
        drop(r);
        let none = BTreeMap::new();
        assert!(
            Keyring::open(other.path(), Some(&journal), &none, &[1]).is_err(),
            "needed while segment 1 exists"
        );
        assert!(
            Keyring::open(other.path(), Some(&journal), &none, &[]).is_ok(),
            "not once it is gone"
        );
        assert!(!valid_key_name("") && !valid_key_name("a b") && valid_key_name("alias/orders-1"));
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
