//! The data directory, held with an exclusive lock so two brokers never
//! write the same files.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::ServerError;

pub struct DataDir {
    path: PathBuf,
    /// Holds the lock for as long as the server lives.
    _lock: File,
}

impl DataDir {
    pub fn open(path: &Path) -> Result<Self, ServerError> {
        let err = |detail: String| ServerError::DataDir {
            path: path.to_owned(),
            detail,
        };
        std::fs::create_dir_all(path).map_err(|e| err(e.to_string()))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join("LOCK"))
            .map_err(|e| err(e.to_string()))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => {
                err("in use by another ferry process (LOCK is held)".into())
            }
            std::fs::TryLockError::Error(e) => err(e.to_string()),
        })?;
        Ok(DataDir {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = std::env::temp_dir().join(format!("ferry-datadir-{}", std::process::id()));
        let first = DataDir::open(&dir).expect("first open");
        let second = DataDir::open(&dir);
        assert!(matches!(second, Err(ServerError::DataDir { .. })));
        drop(first);
        DataDir::open(&dir).expect("reopen after release");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
