//! `ferry encryption new-key|rotate`: the master key of encryption at rest.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use ferry_storage::{Keyring, MasterKey};

#[derive(Subcommand, Debug)]
pub enum EncryptionCommand {
    /// Print a new random master key (64 hex digits) to put in a key file.
    NewKey,
    /// Re-wrap the journal's data keys with a new master key, with the
    /// broker stopped. No segment is rewritten.
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
            let n = Keyring::rotate(
                &journal,
                queue_key.as_deref(),
                &read_key(&key_file)?,
                &read_key(&new_key_file)?,
            )?;
            println!("{n} data keys re-wrapped; start the broker with the new key");
        }
    }
    Ok(())
}
