//! SASL against a real `ferry serve`: librdkafka logs in with PLAIN as
//! ferry's users (a hashed password and a plain one), wrong passwords and
//! clients that do not authenticate are refused, and each user's topic
//! permissions apply. (SCRAM-SHA-256/512 is tested with kafka-python and
//! confluent-kafka in the compatibility suite: this librdkafka is built
//! without OpenSSL, which its SCRAM needs; the exchange itself is unit
//! tested in ferry-auth.)

mod common;
mod kafka_support;

use std::process::Command;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use common::Ferry;
use kafka_support::config;

fn as_user(ferry: &Ferry, user: &str, password: &str) -> ClientConfig {
    let mut c = config(ferry);
    c.set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanisms", "PLAIN")
        .set("sasl.username", user)
        .set("sasl.password", password);
    c
}

fn start(dir: &std::path::Path) -> Ferry {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["hash-password", "app secret"])
        .output()
        .expect("hash-password");
    let hash = String::from_utf8(out.stdout).expect("utf-8");
    let config = dir.join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[[users]]\nname = \"app\"\npassword-hash = \"{}\"\n\n\
             [[users]]\nname = \"reader\"\npassword = \"read only\"\n\n\
             [[permissions]]\nuser = \"app\"\nvhost = \"/\"\nconfigure = \".*\"\nwrite = \".*\"\nread = \".*\"\n\n\
             [[permissions]]\nuser = \"reader\"\nvhost = \"/\"\nconfigure = \"\"\nwrite = \"\"\nread = \".*\"\n",
            hash.trim()
        ),
    )
    .expect("config");
    Ferry::start(
        &dir.join("data"),
        &["kafka"],
        &[
            "--config",
            config.to_str().expect("path"),
            "--kafka-anonymous-user",
            "",
        ],
    )
}

fn metadata(c: ClientConfig) -> Result<usize, KafkaError> {
    let consumer: BaseConsumer = c.create().expect("client");
    consumer
        .fetch_metadata(None, Duration::from_secs(5))
        .map(|m| m.brokers().len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_logs_in_as_ferrys_users_with_their_permissions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path());

    // Right passwords, hashed or plain in the config.
    assert_eq!(metadata(as_user(&ferry, "app", "app secret")).ok(), Some(1));
    assert_eq!(
        metadata(as_user(&ferry, "reader", "read only")).ok(),
        Some(1)
    );
    // A wrong password, an unknown user, and no SASL at all (there is no
    // anonymous user here): refused.
    // (At once: each waits out its timeout.)
    std::thread::scope(|s| {
        let tries: Vec<_> = [
            as_user(&ferry, "app", "wrong"),
            as_user(&ferry, "nobody", "app secret"),
            config(&ferry),
        ]
        .into_iter()
        .map(|c| s.spawn(move || metadata(c).is_err()))
        .collect();
        for t in tries {
            assert!(t.join().expect("thread"), "refused");
        }
    });

    // app creates and writes; reader reads and may not write.
    let admin: AdminClient<DefaultClientContext> = as_user(&ferry, "app", "app secret")
        .create()
        .expect("admin");
    let res = admin
        .create_topics(
            &[NewTopic::new("audit", 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create");
    assert!(res[0].is_ok(), "{res:?}");
    let app: FutureProducer = as_user(&ferry, "app", "app secret")
        .set("acks", "all")
        .create()
        .expect("producer");
    app.send(
        FutureRecord::<(), _>::to("audit").payload("entry 1"),
        Duration::from_secs(10),
    )
    .await
    .expect("app writes");
    let reader: FutureProducer = as_user(&ferry, "reader", "read only")
        .set("acks", "all")
        .set("message.timeout.ms", "5000")
        .create()
        .expect("producer");
    let err = reader
        .send(
            FutureRecord::<(), _>::to("audit").payload("forged"),
            Duration::from_secs(10),
        )
        .await
        .expect_err("reader may not write");
    assert_eq!(
        err.0,
        KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    let c: BaseConsumer = as_user(&ferry, "reader", "read only")
        .set("group.id", "readers")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    c.subscribe(&["audit"]).expect("subscribe");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while got.is_empty() && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            got.push(m.payload().map(<[u8]>::to_vec));
        }
    }
    assert_eq!(got, vec![Some(b"entry 1".to_vec())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sasl_exchange_refuses_in_kafkas_error_codes() {
    use kafka_protocol::messages::{
        ApiKey, MetadataRequest, SaslAuthenticateRequest, SaslAuthenticateResponse,
        SaslHandshakeRequest, SaslHandshakeResponse,
    };
    use kafka_protocol::protocol::StrBytes;
    use std::io::Read;
    use std::net::TcpStream;

    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = start(dir.path());
    let connect = || {
        let c = TcpStream::connect(ferry.addr("kafka")).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        c
    };
    let handshake = |c: &mut TcpStream, m: &'static str| -> SaslHandshakeResponse {
        kafka_support::call(
            c,
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(m)),
        )
    };
    let authenticate = |c: &mut TcpStream, token: &'static [u8]| -> SaslAuthenticateResponse {
        kafka_support::call(
            c,
            ApiKey::SaslAuthenticate,
            2,
            &SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::from_static(token)),
        )
    };
    let closed = |mut c: TcpStream| {
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).map(|_| rest.len()).ok() == Some(0)
    };

    // An unknown mechanism: UNSUPPORTED_SASL_MECHANISM with the list; the
    // client may then pick one.
    let mut c = connect();
    let res = handshake(&mut c, "GSSAPI");
    assert_eq!(res.error_code, 33);
    let offered: Vec<String> = res.mechanisms.iter().map(|m| m.to_string()).collect();
    assert_eq!(offered, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
    assert_eq!(handshake(&mut c, "PLAIN").error_code, 0);
    // A wrong password: SASL_AUTHENTICATION_FAILED, then the connection
    // is closed.
    let res = authenticate(&mut c, b"\0app\0wrong");
    assert_eq!(res.error_code, 58);
    assert!(closed(c));

    // A malformed PLAIN token, and a malformed SCRAM first message.
    let mut c = connect();
    handshake(&mut c, "PLAIN");
    assert_eq!(authenticate(&mut c, b"no separators").error_code, 58);
    assert!(closed(c));
    let mut c = connect();
    handshake(&mut c, "SCRAM-SHA-256");
    assert_eq!(authenticate(&mut c, b"p=tls,,n=app,r=x").error_code, 58);
    assert!(closed(c));

    // Another request after the handshake, before authenticating: closed.
    let mut c = connect();
    handshake(&mut c, "PLAIN");
    let mut frame = Vec::new();
    {
        use kafka_protocol::protocol::Encodable;
        let mut buf = bytes::BytesMut::new();
        kafka_protocol::messages::RequestHeader::default()
            .with_request_api_key(ApiKey::Metadata as i16)
            .with_request_api_version(1)
            .encode(&mut buf, 1)
            .expect("header");
        MetadataRequest::default()
            .with_topics(None)
            .encode(&mut buf, 1)
            .expect("body");
        frame.extend_from_slice(&(buf.len() as i32).to_be_bytes());
        frame.extend_from_slice(&buf);
    }
    std::io::Write::write_all(&mut c, &frame).expect("send");
    assert!(closed(c));

    // The right password: authenticated, and the session serves on.
    let mut c = connect();
    handshake(&mut c, "PLAIN");
    assert_eq!(authenticate(&mut c, b"\0app\0app secret").error_code, 0);
    let again = handshake(&mut c, "PLAIN");
    assert_eq!(
        again.error_code, 34,
        "ILLEGAL_SASL_STATE: no re-authentication"
    );
}
