//! Segment files: `<id>.seg` in the journal directory, each starting with a
//! header that names its format version and its own id.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub const HEADER: u64 = 32;
const MAGIC: &[u8; 8] = b"FERRYJNL";
/// Bumped when the layout of frames or records changes incompatibly;
/// readers refuse versions they do not know. Version 2 added records
/// sealed under a queue's key and the forwarded flag of an Enqueued
/// record; version 3 the original TTL of a death (a flag bit on its
/// reason): an older reader would misread them, so it must refuse.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest version this build reads (each version is a subset of the
/// next, so one decoder reads them all).
const OLDEST_READABLE: u32 = 1;

pub fn path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segment ids in the directory, oldest first.
pub fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(id) = entry.file_name().to_str().and_then(parse_name) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Ids of segments `--repair` set aside (`<id>.seg.corrupt`).
pub fn list_set_aside(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".corrupt"))
            .and_then(parse_name)
        {
            ids.push(id);
        }
    }
    Ok(ids)
}

pub fn header(id: u64) -> [u8; HEADER as usize] {
    let mut h = [0u8; HEADER as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&id.to_le_bytes());
    let crc = crc32c::crc32c(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment's header; the error says what is wrong.
pub fn check_header(data: &[u8], id: u64) -> Result<(), String> {
    if data.len() < HEADER as usize {
        return Err(format!("header is {} of {HEADER} bytes", data.len()));
    }
    let h = &data[..HEADER as usize];
    if &h[..8] != MAGIC {
        return Err("not a ferry journal segment (bad magic)".into());
    }
    let crc = u32::from_le_bytes([h[28], h[29], h[30], h[31]]);
    if crc32c::crc32c(&h[..28]) != crc {
        return Err("header checksum mismatch".into());
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if !(OLDEST_READABLE..=FORMAT_VERSION).contains(&version) {
        return Err(format!(
            "format version {version}; this build reads versions {OLDEST_READABLE} to {FORMAT_VERSION}"
        ));
    }
    let mut idb = [0u8; 8];
    idb.copy_from_slice(&h[12..20]);
    if u64::from_le_bytes(idb) != id {
        return Err("header names another segment id".into());
    }
    Ok(())
}

/// Creates segment `id` with its header, durably (the file and its
/// directory entry are synced).
pub fn create(dir: &Path, id: u64) -> io::Result<File> {
    let p = path(dir, id);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .read(true)
        .open(&p)?;
    f.write_all(&header(id))?;
    f.sync_data()?;
    sync_dir(dir)?;
    Ok(f)
}

/// Opens segment `id` for appending after its first `len` bytes.
pub fn open_append(dir: &Path, id: u64, len: u64) -> io::Result<File> {
    let f = OpenOptions::new().append(true).open(path(dir, id))?;
    f.set_len(len)?;
    Ok(f)
}

/// Makes file creations and removals in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_headers() {
        assert_eq!(parse_name("00000000000000000042.seg"), Some(42));
        assert_eq!(parse_name("42.seg"), None);
        assert_eq!(parse_name("0000000000000000004x.seg"), None);
        let h = header(9);
        assert!(check_header(&h, 9).is_ok());
        assert!(check_header(&h, 8).is_err());
        let mut bad = h;
        bad[9] ^= 1;
        assert!(check_header(&bad, 9).is_err());
        assert!(check_header(&h[..10], 9).is_err());
        // Version 1 segments still read; a version from the future does not.
        let with_version = |v: u32| {
            let mut h = header(9);
            h[8..12].copy_from_slice(&v.to_le_bytes());
            let crc = crc32c::crc32c(&h[..28]);
            h[28..32].copy_from_slice(&crc.to_le_bytes());
            h
        };
        assert!(check_header(&with_version(1), 9).is_ok());
        assert!(check_header(&with_version(FORMAT_VERSION + 1), 9).is_err());
    }
}
