//! The tx class: publishes and settlements held until tx.commit, which
//! answers only once they are durable (an acked message cannot come back
//! after a crash); tx.rollback drops them.
//!
//! commit-ok waits for the journal as every durable change's answer does
//! (see `durable.rs`).

use amq_protocol::protocol::{AMQPClass, tx};
use ferry_core::Message;
use ferry_core::store::Commit;

use super::Channel;
use super::basic::Settle;
use crate::connection::Ctx;
use crate::error::{Failure, Outcome, ReplyCode};

/// What a transaction holds until it commits.
#[derive(Default)]
pub struct Tx {
    /// (exchange, mandatory, message)
    pub publishes: Vec<(String, bool, Message)>,
    /// (delivery tag, multiple, how)
    pub settles: Vec<(u64, bool, Settle)>,
    /// Every tag up to this one is settled by a `multiple` of this transaction.
    settled_upto: u64,
    /// Tags settled one by one in this transaction.
    settled: std::collections::HashSet<u64>,
}

impl Tx {
    /// Whether this transaction settles `tag` already.
    pub fn covers(&self, tag: u64) -> bool {
        tag <= self.settled_upto || self.settled.contains(&tag)
    }

    pub fn settle(&mut self, tag: u64, multiple: bool, how: Settle) {
        if multiple {
            self.settled_upto = if tag == 0 {
                u64::MAX
            } else {
                self.settled_upto.max(tag)
            };
        } else {
            self.settled.insert(tag);
        }
        self.settles.push((tag, multiple, how));
    }

    fn clear(&mut self) {
        *self = Tx::default();
    }
}

impl Channel {
    pub(super) fn on_tx(&mut self, cx: &mut Ctx, m: tx::AMQPMethod) -> Outcome {
        match m {
            tx::AMQPMethod::Select(_) => {
                if self.confirms.is_some() {
                    return Err(Failure::channel(
                        ReplyCode::PreconditionFailed,
                        "cannot switch from confirm to tx mode",
                    ));
                }
                if self.tx.is_none() {
                    self.tx = Some(Tx::default());
                }
                reply(cx, self.to.id, tx::AMQPMethod::SelectOk(tx::SelectOk {}));
                Ok(())
            }
            tx::AMQPMethod::Commit(_) => self.tx_commit(cx),
            tx::AMQPMethod::Rollback(_) => {
                self.tx.as_mut().ok_or_else(not_transactional)?.clear();
                reply(
                    cx,
                    self.to.id,
                    tx::AMQPMethod::RollbackOk(tx::RollbackOk {}),
                );
                Ok(())
            }
            other => Err(super::basic::server_only(&AMQPClass::Tx(other))),
        }
    }

    fn tx_commit(&mut self, cx: &mut Ctx) -> Outcome {
        let t = std::mem::take(self.tx.as_mut().ok_or_else(not_transactional)?);
        let settled = !t.settles.is_empty();
        for (tag, multiple, how) in t.settles {
            self.settle_now(cx, tag, multiple, how)?;
        }
        // The acks' removals are durable once everything before now is.
        let mut commit = if settled {
            cx.amqp.broker.barrier()
        } else {
            Commit::done()
        };
        for (exchange, mandatory, msg) in t.publishes {
            let (c, _) = self.publish(cx, &exchange, mandatory, msg)?;
            commit = commit.and(c);
        }
        let reply = AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {}));
        self.answer_when_durable(cx, commit, Some(reply), (90, 20))
    }
}

fn not_transactional() -> Failure {
    Failure::channel(
        ReplyCode::PreconditionFailed,
        "channel is not transactional",
    )
}

fn reply(cx: &mut Ctx, channel: u16, m: tx::AMQPMethod) {
    cx.out.method(channel, AMQPClass::Tx(m));
}
