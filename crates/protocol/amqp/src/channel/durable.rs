//! Answers that wait for the journal. A client told declare-ok, bind-ok,
//! delete-ok or commit-ok may crash the broker the next moment and must
//! find the change there after the restart; so a method whose change is
//! not durable yet is answered once it is. Until then the connection
//! reads no further frames, so no later reply can overtake the answer
//! (AMQP replies come in the order of the methods).

use amq_protocol::protocol::AMQPClass;
use ferry_core::store::Commit;

use super::Channel;
use crate::connection::Ctx;
use crate::error::{Failure, Outcome, ReplyCode};
use crate::events::Event;

/// The (class, method) ids of a method, to name it in channel.close.
pub type MethodId = (u16, u16);

impl Channel {
    /// Sends `reply` (if the client wants one) once `commit` is durable;
    /// `method` is the method answered. With no reply (`nowait`) nobody is
    /// told the change is done, so nothing waits.
    pub(super) fn answer_when_durable(
        &mut self,
        cx: &mut Ctx,
        commit: Commit,
        reply: Option<AMQPClass>,
        method: MethodId,
    ) -> Outcome {
        let Some(reply) = reply else {
            return match commit.outcome() {
                Some(Err(e)) => Err(not_durable(&e)),
                _ => Ok(()),
            };
        };
        match commit.outcome() {
            Some(Ok(())) => {
                cx.out.method(self.to.id, reply);
                return Ok(());
            }
            Some(Err(e)) => return Err(not_durable(&e)),
            None => {}
        }
        cx.paused = true;
        let events = cx.events.clone();
        let to = self.to;
        tokio::spawn(async move {
            let ok = commit.wait().await.is_ok();
            let _ = events.send(Event::Durable {
                to,
                ok,
                reply: Box::new(reply),
                method,
            });
        });
        Ok(())
    }

    /// The change a held answer waited for is durable (or could not be
    /// made so: then the channel fails, naming the method).
    pub(super) fn durable(&mut self, cx: &mut Ctx, ok: bool, reply: AMQPClass, method: MethodId) {
        cx.paused = false;
        if ok {
            cx.out.method(self.to.id, reply);
        } else {
            cx.failed_channel = Some((self.to, not_durable(&"the journal failed"), method));
        }
    }
}

/// The client learns of it as RabbitMQ reports an internal error.
pub(super) fn not_durable(why: &dyn std::fmt::Display) -> Failure {
    Failure::channel(
        ReplyCode::InternalError,
        format!("the change could not be made durable: {why}"),
    )
}
