//! A partition's log-start file, `<partition>/log-start`: the first
//! offset DeleteRecords left readable, when that is past the first
//! segment's base (segments before it are deleted, but the one holding it
//! stays). 16 bytes: magic `FLS1`, the offset (u64, big-endian), CRC-32C
//! of the first 12. Replaced whole (temporary file, fsync, rename, fsync
//! of the directory), so a crash leaves the old start or the new one.

use std::io::Write;
use std::path::Path;

use ferry_core::store::StoreError;

use crate::journal::io_error;

const FILE: &str = "log-start";
const MAGIC: &[u8; 4] = b"FLS1";
const LEN: usize = 16;

/// The stored start, if DeleteRecords ever set one.
pub fn read(dir: &Path) -> Result<Option<u64>, StoreError> {
    let path = dir.join(FILE);
    let b = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&path, e)),
    };
    let corrupt = |detail: &str| StoreError::Corrupt {
        file: path.display().to_string(),
        offset: 0,
        detail: detail.to_owned(),
    };
    let (Some(head), Some(crc)) = (b.get(..12), b.get(12..LEN)) else {
        return Err(corrupt("shorter than 16 bytes"));
    };
    if b.len() != LEN || head.get(..4) != Some(MAGIC.as_slice()) {
        return Err(corrupt("not a log-start file of this format"));
    }
    if crc32c::crc32c(head).to_be_bytes().as_slice() != crc {
        return Err(corrupt("checksum mismatch"));
    }
    let mut offset = [0u8; 8];
    offset.copy_from_slice(head.get(4..12).unwrap_or(&[0; 8]));
    Ok(Some(u64::from_be_bytes(offset)))
}

/// Makes `offset` the stored start, durably.
pub fn write(dir: &Path, offset: u64) -> Result<(), StoreError> {
    let mut b = Vec::with_capacity(LEN);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&offset.to_be_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    let path = dir.join(FILE);
    let tmp = dir.join("log-start.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
    f.write_all(&b)
        .and_then(|()| f.sync_data())
        .map_err(|e| io_error(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))?;
    crate::segment::sync_dir(dir).map_err(|e| io_error(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_reads_back_and_damage_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        assert_eq!(read(dir.path()).ok(), Some(None));
        write(dir.path(), 1234).expect("write");
        assert_eq!(read(dir.path()).ok(), Some(Some(1234)));
        let path = dir.path().join(FILE);
        let mut b = std::fs::read(&path).expect("read");
        b[7] ^= 1;
        std::fs::write(&path, &b).expect("damage");
        assert!(read(dir.path()).is_err());
        std::fs::write(&path, b"FLS1").expect("truncate");
        assert!(read(dir.path()).is_err());
    }
}
