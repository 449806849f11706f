//! One client connection: the socket loop.
//!
//! The loop reads and writes at once (a client blocked writing publishes
//! while we are blocked writing deliveries would otherwise deadlock both),
//! handles every whole frame of a read before writing, and takes broker
//! events (deliveries, confirms) between reads, a bounded number per turn
//! so that neither side starves the other.
//!
//! Every timeout and heartbeat runs on the broker's injected clock, so a
//! test's fake clock drives them (nothing here reads `Instant` or sleeps
//! on tokio's timer).

mod handshake;
mod session;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ferry_core::clock::{Clock, Sleep, within};
use ferry_face::{Accepted, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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
/// How long a closed connection waits for the client to close its side.
const LINGER: Duration = Duration::from_secs(1);

pub async fn run<S: Stream>(amqp: Arc<Amqp>, conn: Accepted<S>) {
    let Accepted {
        stream,
        peer,
        certified,
        admission,
        mut stop,
    } = conn;
    let id = admission.id();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut inbuf = BytesMut::with_capacity(64 * 1024);
    let mut out = Output::default();
    let clock = Arc::clone(amqp.broker.clock());
    let timeout = amqp.config.handshake_timeout;
    let opened = within(
        &*clock,
        timeout,
        handshake::handshake(
            &amqp,
            admission,
            certified.as_deref(),
            &mut reader,
            &mut writer,
            &mut inbuf,
            &mut out,
        ),
    )
    .await;
    let (tuned, registered) = match opened {
        Some(Ok(opened)) => opened,
        Some(Err(end)) => {
            tracing::debug!(%peer, reason = %end, "connection ended during the handshake");
            flush(&*clock, &mut writer, &mut out).await;
            return;
        }
        None => {
            tracing::info!(%peer, "handshake timed out");
            return;
        }
    };
    tracing::info!(%peer, user = %tuned.user.name, vhost = %tuned.vhost, "AMQP connection open");
    let heartbeat = tuned.heartbeat;
    let entry = Arc::clone(&registered);
    let mut session = Session::new(Arc::clone(&amqp), id, tuned, out, Arc::clone(&entry));

    let tick_every = if heartbeat.is_zero() {
        Duration::from_secs(1)
    } else {
        (heartbeat / 2).max(Duration::from_millis(100))
    };
    // Made anew at each tick (and the close deadline's once), not each
    // turn: a turn of this loop allocates nothing.
    let mut tick: Sleep = clock.sleep_until(clock.now().plus(tick_every));
    let mut close_sleep: Option<Sleep> = None;
    let mut last_read = clock.now();
    // The client closed the socket (no need to wait for it at the end).
    let mut peer_closed = false;
    let mut alarm = amqp.broker.alarm();
    let mut alarm_live = true;
    session.on_alarm(alarm.borrow_and_update().clone());
    let mut stopping = *stop.borrow();
    // Made once: a close request made between turns is not lost (the
    // reason is kept until taken).
    let close_requested = entry.close_requested();
    tokio::pin!(close_requested);
    if stopping {
        session.fail(shutting_down());
    }
    // Frames the client sent right behind connection.open.
    if let Err(f) = session.on_input(&mut inbuf) {
        session.fail(f);
    }

    loop {
        let pending = session.cx.out.len();
        let writing = pending > 0;
        // A client that does not read its deliveries or replies gets no
        // more of either, and past a limit we stop reading its requests.
        // While an answer waits for the journal, events are taken whatever
        // is unwritten: the one that ends the wait is among them (what else
        // comes is bounded by the consumers' flow windows).
        let take_events = pending < OUTPUT_HIGH_WATER || session.cx.paused;
        let reading = !session.input_held() && pending < OUTPUT_HIGH_WATER * 4;
        if close_sleep.is_none()
            && let Some(at) = session.close_deadline()
        {
            close_sleep = Some(clock.sleep_until(at));
        }
        tokio::select! {
            r = writer.write(session.cx.out.pending()), if writing => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    entry.sent(n);
                    session.cx.flush_traffic();
                    session.cx.out.consume(n);
                }
            },
            r = reader.read_buf(&mut inbuf), if reading => match r {
                Ok(0) | Err(_) => {
                    peer_closed = true;
                    break;
                }
                Ok(n) => {
                    entry.received(n);
                    session.cx.flush_traffic();
                    last_read = clock.now();
                    if let Err(f) = session.on_input(&mut inbuf) {
                        session.fail(f);
                    }
                }
            },
            Some(ev) = session.events.recv(), if take_events => {
                session.on_event(ev);
                for _ in 1..EVENTS_PER_TURN {
                    // Bounded in bytes too: deliveries of large messages.
                    if session.cx.out.len() >= OUTPUT_HIGH_WATER {
                        break;
                    }
                    match session.events.try_recv() {
                        Ok(ev) => session.on_event(ev),
                        Err(_) => break,
                    }
                }
                session.after_events();
                // Frames read while a commit held the input back.
                if !session.input_held() && !inbuf.is_empty()
                    && let Err(f) = session.on_input(&mut inbuf)
                {
                    session.fail(f);
                }
            }
            () = &mut tick => {
                let now = clock.now();
                tick = clock.sleep_until(now.plus(tick_every));
                if !heartbeat.is_zero() {
                    // While we do not read, silence is ours, not the client's.
                    if !reading {
                        last_read = now;
                    } else if now.since(last_read) > heartbeat * 2 {
                        tracing::info!(%peer, "missed heartbeats from the client; closing");
                        break;
                    }
                    if !session.cx.out.take_activity() {
                        session.cx.out.heartbeat();
                    }
                }
            }
            () = until(&mut close_sleep), if close_sleep.is_some() => break,
            changed = alarm.changed(), if alarm_live => {
                if changed.is_err() {
                    // The broker is going away; shutdown tells us the rest.
                    alarm_live = false;
                } else {
                    session.on_alarm(alarm.borrow_and_update().clone());
                    // Released: what the client sent meanwhile is waiting.
                    if !session.input_held() && !inbuf.is_empty()
                        && let Err(f) = session.on_input(&mut inbuf)
                    {
                        session.fail(f);
                    }
                }
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                session.fail(shutting_down());
            }
            reason = &mut close_requested, if !stopping => {
                stopping = true;
                tracing::info!(%peer, %reason, "closing the connection on an operator's request");
                session.fail(Failure::connection(
                    ReplyCode::ConnectionForced,
                    reason,
                ));
            }
        }
        if session.is_finished() {
            break;
        }
    }
    flush(&*clock, &mut writer, &mut session.cx.out).await;
    session.cx.flush_traffic();
    let _ = writer.shutdown().await;
    // Unacked messages go back and the connection stops counting against
    // the limits now, not after the linger below.
    session.release();
    session.drain_orphans();
    drop(registered);
    if !peer_closed {
        // Our side is closed (FIN sent); frames the client wrote before it
        // read our close-ok (its last acks) are read and dropped until it
        // closes too, so its writes do not fail with a broken pipe.
        let _ = within(&*clock, LINGER, async {
            let mut sink = [0u8; 4096];
            while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
    tracing::info!(%peer, "AMQP connection closed");
}

fn shutting_down() -> Failure {
    Failure::connection(
        ReplyCode::ConnectionForced,
        "broker forced connection closure with reason 'shutdown'",
    )
}

/// Waits on `sleep`, if there is one (else never).
async fn until(sleep: &mut Option<Sleep>) {
    match sleep {
        Some(s) => s.await,
        None => std::future::pending().await,
    }
}

/// Writes what is pending, for a short while at most.
async fn flush<W: AsyncWrite + Unpin>(clock: &dyn Clock, writer: &mut W, out: &mut Output) {
    let _ = within(clock, FLUSH_TIMEOUT, async {
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
