//! `ferry encryption new-key|rotate`: the master key of encryption at rest.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use ferry_storage::{Keyring, MasterKey};

#[derive(Subcommand, Debug)]
pub enum EncryptionCommand {
    /// Print a new random master key (64 hex digits) to put in a key file.
    NewKey,
    /// Re-wrap the data keys of the journal and of every stream partition
    /// with a new master key, with the broker stopped. No segment is
    /// rewritten.
    Rotate {
        #[arg(long, default_value = "./ferry-data")]
        data_dir: PathBuf,
        /// The key the data is encrypted with now.
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
        /// The key to use from now on.
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
        /// Rotate this queue key (`--encryption-queue-key NAME=FILE`)
        /// instead of the journal's key.
        #[arg(long, value_name = "NAME")]
        queue_key: Option<String>,
    },
}

fn read_key(path: &Path) -> anyhow::Result<MasterKey> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    MasterKey::parse(&text).with_context(|| format!("the key in {}", path.display()))
}

/// The partition directories under `streams` that have a keys file
/// (`<stream>/<partition>/keys.json`; the offsets log holds no records).
fn stream_partitions(streams: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(streams) else {
        return Ok(out);
    };
    for stream in entries {
        let stream = stream?.path();
        if !stream.is_dir() {
            continue;
        }
        for part in std::fs::read_dir(&stream)? {
            let part = part?.path();
            if part.is_dir() && Keyring::exists(&part) {
                out.push(part);
            }
        }
    }
    out.sort();
    Ok(out)
}

pub fn run(command: EncryptionCommand) -> anyhow::Result<()> {
    match command {
        EncryptionCommand::NewKey => {
            println!("{}", MasterKey::generate()?.to_hex());
        }
        EncryptionCommand::Rotate {
            data_dir,
            key_file,
            new_key_file,
            queue_key,
        } => {
            // Held while rotating: a running broker would write the keys
            // back under the old key, or lose a segment's new data key.
            let _lock =
                ferry_server::DataDir::open(&data_dir).context("rotate with the broker stopped")?;
            let journal = data_dir.join("journal");
            anyhow::ensure!(
                Keyring::exists(&journal),
                "{} is not encrypted",
                journal.display()
            );
            let (old, new) = (read_key(&key_file)?, read_key(&new_key_file)?);
            // The journal's keys first (they prove `old` is the key), then
            // each partition's, one by one: not all or nothing, but a
            // re-run after an interruption finishes the ones left.
            let mut dirs = vec![journal];
            if queue_key.is_none() {
                dirs.extend(stream_partitions(&data_dir.join("streams"))?);
            }
            let mut n = 0;
            for dir in &dirs {
                n += match Keyring::rotate(dir, queue_key.as_deref(), &old, &new) {
                    Ok(n) => n,
                    // Moved by a rotation that stopped part way: running it
                    // again finishes it.
                    Err(_) if Keyring::rotate(dir, queue_key.as_deref(), &new, &new).is_ok() => 0,
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("rotating the keys in {}", dir.display()));
                    }
                };
            }
            println!(
                "{n} data keys re-wrapped in {} keys files; start the broker with the new key",
                dirs.len()
            );
        }
    }
    Ok(())
}
