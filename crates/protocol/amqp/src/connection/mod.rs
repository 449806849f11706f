//! One client connection: the socket loop.
//!
//! The loop reads and writes at once (a client blocked writing publishes
//! while we are blocked writing deliveries would otherwise deadlock both),
//! handles every whole frame of a read before writing, and takes broker
//! events (deliveries, confirms) between reads, a bounded number per turn
//! so that neither side starves the other.

mod handshake;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::Amqp;
use crate::codec::{self, Output};
use crate::error::{Failure, ReplyCode};

pub use session::{Ctx, Session};

/// Events handled per turn before the socket is looked at again.
const EVENTS_PER_TURN: usize = 256;
/// Past this many bytes waiting to be written, events wait (the client is
/// reading slower than the queues deliver).
const OUTPUT_HIGH_WATER: usize = 1 << 20;
/// How long a client has to answer our connection.close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the last frames (a connection.close) may take to go out.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

pub async fn run<S>(
    amqp: Arc<Amqp>,
    id: u64,
    stream: S,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut inbuf = BytesMut::with_capacity(64 * 1024);
    let mut out = Output::default();
    let timeout = amqp.config.handshake_timeout;
    let opened = tokio::time::timeout(
        timeout,
        handshake::handshake(&amqp, peer, &mut reader, &mut writer, &mut inbuf, &mut out),
    )
    .await;
    let tuned = match opened {
        Ok(Ok(tuned)) => tuned,
        Ok(Err(end)) => {
            tracing::debug!(%peer, reason = %end, "connection ended during the handshake");
            flush(&mut writer, &mut out).await;
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "handshake timed out");
            return;
        }
    };
    tracing::info!(%peer, user = %tuned.user, vhost = %tuned.vhost, "AMQP connection open");
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let heartbeat = tuned.heartbeat;
    let mut session = Session::new(Arc::clone(&amqp), id, tuned, out, events_tx);

    let tick_every = if heartbeat.is_zero() {
        Duration::from_secs(1)
    } else {
        (heartbeat / 2).max(Duration::from_millis(100))
    };
    let mut ticker = tokio::time::interval(tick_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_read = Instant::now();
    let mut stopping = *stop.borrow();
    if stopping {
        session.fail(Failure::connection(
            ReplyCode::ConnectionForced,
            "broker forced connection closure with reason 'shutdown'",
        ));
    }

    loop {
        let writing = !session.cx.out.is_empty();
        let take_events = session.cx.out.len() < OUTPUT_HIGH_WATER && !session.is_closing();
        tokio::select! {
            r = writer.write(session.cx.out.pending()), if writing => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => session.cx.out.consume(n),
            },
            r = reader.read_buf(&mut inbuf), if !session.is_paused() => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    last_read = Instant::now();
                    if let Err(f) = session.on_input(&mut inbuf) {
                        session.fail(f);
                    }
                }
            },
            Some(ev) = events.recv(), if take_events => {
                session.on_event(ev);
                for _ in 1..EVENTS_PER_TURN {
                    match events.try_recv() {
                        Ok(ev) => session.on_event(ev),
                        Err(_) => break,
                    }
                }
                // Frames read while a commit held the input back.
                if !session.is_paused() && !inbuf.is_empty()
                    && let Err(f) = session.on_input(&mut inbuf)
                {
                    session.fail(f);
                }
            }
            _ = ticker.tick() => {
                if !heartbeat.is_zero() {
                    if last_read.elapsed() > heartbeat * 2 {
                        tracing::info!(%peer, "missed heartbeats from the client; closing");
                        break;
                    }
                    if !session.cx.out.take_activity() {
                        session.cx.out.heartbeat();
                    }
                }
                if session.close_expired() {
                    break;
                }
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                session.fail(Failure::connection(
                    ReplyCode::ConnectionForced,
                    "broker forced connection closure with reason 'shutdown'",
                ));
            }
        }
        if session.is_finished() {
            break;
        }
    }
    flush(&mut writer, &mut session.cx.out).await;
    let _ = writer.shutdown().await;
    session.release();
    tracing::info!(%peer, "AMQP connection closed");
}

/// Writes what is pending, for a short while at most.
async fn flush<W: AsyncWrite + Unpin>(writer: &mut W, out: &mut Output) {
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, async {
        while !out.is_empty() {
            match writer.write(out.pending()).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.consume(n),
            }
        }
        let _ = writer.flush().await;
    })
    .await;
}

/// Reads until a whole frame is there (the handshake's reads).
async fn next_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    inbuf: &mut BytesMut,
    frame_max: u32,
) -> Result<codec::Incoming, handshake::End> {
    loop {
        if let Some(f) = codec::decode(inbuf, frame_max).map_err(handshake::End::Failed)? {
            return Ok(f);
        }
        match reader.read_buf(inbuf).await {
            Ok(0) | Err(_) => return Err(handshake::End::Gone),
            Ok(_) => {}
        }
    }
}
