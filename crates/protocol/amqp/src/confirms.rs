//! Publisher confirms of one channel: a task awaits each publish's journal
//! commit in publish order and sends acks (or nacks) to the connection,
//! joining runs of settled publishes into one `multiple` confirm.

use ferry_core::store::Commit;
use tokio::sync::mpsc;

use crate::events::{ChannelRef, Event, Events};

/// A publish awaiting its confirm.
pub struct Pending {
    pub tag: u64,
    pub commit: Commit,
    /// False if a queue refused the message (reject-publish): nack it.
    pub accepted: bool,
}

/// The publishing side of a channel in confirm mode.
pub struct Confirms {
    next_tag: u64,
    tx: mpsc::UnboundedSender<Pending>,
}

impl Confirms {
    pub fn start(events: Events, to: ChannelRef) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, events, to));
        Confirms { next_tag: 1, tx }
    }

    /// Registers the next publish; its confirm follows its commit.
    pub fn push(&mut self, commit: Commit, accepted: bool) {
        let tag = self.next_tag;
        self.next_tag += 1;
        // The task ends only when this sender is dropped.
        let _ = self.tx.send(Pending {
            tag,
            commit,
            accepted,
        });
    }
}

/// A run of consecutive tags with the same outcome.
struct Run {
    first: u64,
    last: u64,
    ack: bool,
}

async fn run(mut rx: mpsc::UnboundedReceiver<Pending>, events: Events, to: ChannelRef) {
    let mut run: Option<Run> = None;
    loop {
        let p = match rx.try_recv() {
            Ok(p) => p,
            Err(mpsc::error::TryRecvError::Empty) => {
                flush(&events, to, run.take());
                match rx.recv().await {
                    Some(p) => p,
                    None => return,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => {
                flush(&events, to, run.take());
                return;
            }
        };
        if !p.commit.is_settled() {
            // Confirm what is settled now rather than after this one's sync.
            flush(&events, to, run.take());
        }
        let ack = p.commit.wait().await.is_ok() && p.accepted;
        run = match run {
            Some(r) if r.ack == ack => Some(Run { last: p.tag, ..r }),
            other => {
                flush(&events, to, other);
                Some(Run {
                    first: p.tag,
                    last: p.tag,
                    ack,
                })
            }
        };
    }
}

fn flush(events: &Events, to: ChannelRef, run: Option<Run>) {
    if let Some(r) = run {
        let _ = events.send(Event::Confirm {
            to,
            tag: r.last,
            multiple: r.first != r.last,
            ack: r.ack,
        });
    }
}
