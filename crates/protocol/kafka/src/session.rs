//! One Kafka connection. Requests are read and started in order (so a
//! partition's batches are appended in the order they were sent), and
//! answered in order, but a request does not wait for the one before it
//! to be answered: a produce waiting for its fsync does not hold back the
//! next produce on the connection, which is how a client with several
//! requests in flight gets group commit.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use ferry_auth::User;
use ferry_core::clock::within;
use ferry_face::{Accepted, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Kafka;
use crate::{handlers, sasl};

/// How many requests may be started and not yet answered on one
/// connection (librdkafka keeps at most 5 produce requests in flight per
/// connection with idempotence; more is reading ahead of a slow client).
const IN_FLIGHT: usize = 64;

/// The answer to one request, in the order requests came.
pub enum Answer {
    /// A response frame (`None`: the request takes no response, as a
    /// produce with acks=0).
    Now(Option<Bytes>),
    Later(JoinHandle<Option<Bytes>>),
    /// The request was malformed: close the connection once everything
    /// before it is answered.
    Close(String),
}

/// Who the connection acts as.
pub struct Client {
    pub user: User,
    pub namespace: String,
    pub entry: Arc<ferry_face::Entry>,
    /// This connection's incremental fetch sessions.
    pub fetch_sessions: std::sync::Mutex<crate::handlers::FetchSessions>,
}

pub async fn run<S: Stream>(kafka: Arc<Kafka>, conn: Accepted<S>) {
    let Accepted {
        mut stream,
        peer,
        certified,
        admission,
        mut stop,
    } = conn;
    let store = kafka.users.current();
    let mut inbuf = BytesMut::with_capacity(64 * 1024);
    let max = kafka.config.max_request_bytes;
    let clock = Arc::clone(kafka.streams.clock());
    let outcome = within(
        &*clock,
        sasl::PHASE_TIMEOUT,
        sasl::authenticate(&mut stream, &mut inbuf, &store, peer, &mut stop),
    )
    .await;
    let user = match outcome {
        None => {
            tracing::info!(%peer, "closing a kafka connection: it did not start its session in time");
            return;
        }
        Some(sasl::Outcome::Closed) => return,
        Some(sasl::Outcome::Authenticated(u)) => u,
        // No SASL: the user the client's certificate names, or the
        // configured anonymous user.
        Some(sasl::Outcome::Skipped) => {
            let who = certified
                .as_deref()
                .map(|c| store.certified(c, peer.ip()))
                .or_else(|| {
                    kafka
                        .config
                        .anonymous_user
                        .as_deref()
                        .map(|a| store.certified(a, peer.ip()))
                });
            match who {
                Some(Ok(u)) => u.clone(),
                Some(Err(e)) => {
                    tracing::info!(%peer, error = %e, "kafka connection refused");
                    return;
                }
                None => {
                    tracing::info!(%peer, "kafka connection refused: it did not authenticate (SASL) and there is no anonymous user");
                    return;
                }
            }
        }
    };
    let namespace = kafka.config.namespace.clone();
    if !user.may_enter(&namespace) {
        tracing::info!(%peer, user = %user.name, "kafka connection refused: no access to the namespace");
        return;
    }
    let registered =
        match admission.register(&user.name, &namespace, kafka.broker.now().as_millis()) {
            Ok(r) => r,
            Err(refused) => {
                tracing::info!(%peer, %refused, "kafka connection refused");
                return;
            }
        };
    let entry: Arc<ferry_face::Entry> = Arc::clone(&registered);
    let client = Arc::new(Client {
        user,
        namespace,
        entry: Arc::clone(&entry),
        fetch_sessions: Default::default(),
    });
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Answer>(IN_FLIGHT);
    let writer_entry = Arc::clone(&entry);
    let writer = tokio::spawn(async move {
        while let Some(a) = rx.recv().await {
            let frame = match a {
                Answer::Now(f) => f,
                Answer::Later(h) => h.await.unwrap_or_default(),
                Answer::Close(why) => {
                    tracing::info!(%peer, %why, "closing a kafka connection");
                    break;
                }
            };
            if let Some(f) = frame {
                if wr.write_all(&f).await.is_err() {
                    break;
                }
                writer_entry.sent(f.len());
            }
        }
        let _ = wr.shutdown().await;
    });
    let close_requested = entry.close_requested();
    tokio::pin!(close_requested);
    'conn: loop {
        // Frames already buffered first.
        while let Some(&[a, b, c, d]) = inbuf.get(..4) {
            let size = i32::from_be_bytes([a, b, c, d]);
            let Some(size) = usize::try_from(size).ok().filter(|s| *s > 0 && *s <= max) else {
                let _ = tx
                    .send(Answer::Close(format!(
                        "request size {size} is outside 1..={max}"
                    )))
                    .await;
                break 'conn;
            };
            if inbuf.len() < 4 + size {
                inbuf.reserve(4 + size - inbuf.len());
                break;
            }
            inbuf.advance(4);
            let frame = inbuf.split_to(size).freeze();
            entry.received(4 + size);
            let answer = handlers::handle(&kafka, &client, frame).await;
            let closing = matches!(answer, Answer::Close(_));
            if tx.send(answer).await.is_err() || closing {
                break 'conn;
            }
        }
        tokio::select! {
            n = rd.read_buf(&mut inbuf) => match n {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            _ = stop.changed() => break,
            reason = &mut close_requested => {
                tracing::info!(%peer, %reason, "closing a kafka connection on an operator's request");
                break;
            }
        }
    }
    drop(tx);
    let _ = writer.await;
    drop(registered);
}
