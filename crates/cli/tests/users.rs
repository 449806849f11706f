//! Users from the config file, with a hash from `ferry hash-password`,
//! logging in over AMQP to the real binary.

mod common;

use std::process::Command;

use common::Ferry;
use lapin::{Connection, ConnectionProperties};

#[tokio::test]
async fn a_configured_user_logs_in_with_a_hashed_password_and_guest_is_gone() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["hash-password", "correct horse"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).expect("utf-8");
    let hash = hash.trim();
    assert!(hash.starts_with("$argon2id$"), "{hash}");

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "vhosts = [\"prod\"]\n\n[[users]]\nname = \"app\"\npassword-hash = \"{hash}\"\n\n\
             [[permissions]]\nuser = \"app\"\nvhost = \"prod\"\nconfigure = \".*\"\nwrite = \".*\"\nread = \".*\"\n"
        ),
    )
    .expect("write config");
    let ferry = Ferry::start(
        &dir.path().join("data"),
        &["amqp"],
        &["--config", config.to_str().expect("path")],
    );
    let addr = ferry.addr("amqp");
    let conn = Connection::connect(
        &format!("amqp://app:correct%20horse@{addr}/prod"),
        ConnectionProperties::default(),
    )
    .await
    .expect("app logs in to prod");
    conn.create_channel().await.expect("channel");
    for url in [
        format!("amqp://app:wrong@{addr}/prod"),
        format!("amqp://guest:guest@{addr}/%2f"),
    ] {
        let refused = Connection::connect(&url, ConnectionProperties::default()).await;
        assert!(refused.is_err(), "{url} must be refused");
    }

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[users]]\nname = \"x\"\npassword-hash = \"nope\"\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--config", bad.to_str().expect("path")])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("user 'x'") && err.contains("PHC"), "{err}");
}
