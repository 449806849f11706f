//! Stream queues on a channel: declaring and deleting them (a stream of
//! the vhost's namespace), consuming them from an offset, and their
//! deliveries, whose settlement is credit. RabbitMQ's refusals for what a
//! stream queue does not do (basic.get, purge, automatic acks, consumers
//! without a prefetch count) are here too.

use std::sync::Arc;

use amq_protocol::protocol::{AMQPClass, basic, queue};
use amq_protocol::types::ShortString;
use ferry_auth::Access;
use ferry_core::store::Commit;
use ferry_core::stream::{Stream, StreamConfig, StreamError};
use tokio::sync::Semaphore;

use super::durable::MethodId;
use super::{Channel, Held, Unacked};
use crate::arguments::QueueFlags;
use crate::connection::Ctx;
use crate::error::{Failure, Outcome, ReplyCode};
use crate::events::Event;
use crate::properties::properties_of;
use crate::stream_queue::arguments::{start_of, stream_config};
use crate::stream_queue::reader::{self, Readers, Target};

/// A consumer of a stream queue.
pub(super) struct StreamConsumer {
    pub seq: u64,
    pub tag: String,
    /// Its deliveries' room: the prefetch count, less what is unsettled.
    pub credit: Arc<Semaphore>,
    /// Stop when this is dropped.
    _readers: Readers,
}

const DECLARE: MethodId = (50, 10);
const DELETE: MethodId = (50, 40);

impl Channel {
    /// The stream a method names, if it names one ("" is the last
    /// declared queue): a stream of the vhost with no queue of that name.
    pub(super) fn stream_named(
        &self,
        cx: &Ctx,
        name: &ShortString,
    ) -> Option<(String, Arc<Stream>)> {
        let name = self.queue_name(name).ok()?;
        let broker = &cx.amqp.broker;
        if broker.queue(&cx.vhost, &name).is_ok() {
            return None;
        }
        broker.stream(&cx.vhost, &name).map(|s| (name, s))
    }

    /// queue.declare of a stream queue (or of any name that is a stream:
    /// a Kafka topic declared over AMQP is that topic).
    pub(super) fn declare_stream(
        &mut self,
        cx: &mut Ctx,
        d: &queue::Declare,
        name: String,
        flags: QueueFlags,
    ) -> Outcome {
        let broker = Arc::clone(&cx.amqp.broker);
        if let Ok(q) = broker.queue(&cx.vhost, &name) {
            let current = q
                .config()
                .attributes
                .get(crate::arguments::QUEUE_TYPE_ATTRIBUTE)
                .cloned()
                .unwrap_or_else(|| "classic".into());
            return Err(Failure::channel(
                ReplyCode::PreconditionFailed,
                format!(
                    "inequivalent arg 'x-queue-type' for queue '{name}' in vhost '{}': received 'stream' but current is '{current}'",
                    cx.vhost
                ),
            ));
        }
        let max = cx.amqp.config.max_message_size;
        let config = stream_config(&name, &cx.vhost, &flags, &d.arguments, max)?;
        self.last_queue = Some(name.clone());
        if let Some(s) = broker.stream(&cx.vhost, &name) {
            check_equivalent(&name, &cx.vhost, &s.config(), &config, &d.arguments)?;
            let ok = declare_ok(&name, records(&s));
            if !d.nowait {
                cx.out.method(self.to.id, ok);
            }
            return Ok(());
        }
        let Some(streams) = broker.streams().cloned() else {
            return Err(Failure::channel(
                ReplyCode::NotImplemented,
                "stream queues are not available on this broker",
            ));
        };
        let vhost = cx.vhost.clone();
        let nowait = d.nowait;
        self.answer_off_task(cx, DECLARE, nowait, move || {
            let created = match streams.create(&vhost, &name, 1, config) {
                Ok(s) => s,
                // Declared meanwhile by someone else: theirs is it.
                Err(StreamError::StreamExists(_)) => streams
                    .get(&vhost, &name)
                    .ok_or_else(|| stream_failure(&StreamError::UnknownStream(name.clone())))?,
                Err(e) => return Err(stream_failure(&e)),
            };
            Ok((declare_ok(&name, records(&created)), Commit::done()))
        })
    }

    /// queue.delete of a stream queue: the stream, its records and the
    /// bindings to it go.
    pub(super) fn delete_stream(
        &mut self,
        cx: &mut Ctx,
        name: String,
        stream: Arc<Stream>,
        nowait: bool,
    ) -> Outcome {
        let broker = Arc::clone(&cx.amqp.broker);
        let Some(streams) = broker.streams().cloned() else {
            return Ok(());
        };
        let vhost = cx.vhost.clone();
        let n = records(&stream);
        drop(stream);
        self.answer_off_task(cx, DELETE, nowait, move || {
            match streams.delete(&vhost, &name) {
                Ok(()) | Err(StreamError::UnknownStream(_)) => {}
                Err(e) => return Err(stream_failure(&e)),
            }
            // The broker removed the bindings to it as it went: answered
            // once their removal is durable.
            let unbound = broker.barrier();
            let ok = AMQPClass::Queue(queue::AMQPMethod::DeleteOk(queue::DeleteOk {
                message_count: u32::try_from(n).unwrap_or(u32::MAX),
            }));
            Ok((ok, unbound))
        })
    }

    /// basic.consume on a stream queue: from `x-stream-offset`, with the
    /// channel's prefetch count as credit and manual acks.
    pub(super) fn consume_stream(
        &mut self,
        cx: &mut Ctx,
        c: &basic::Consume,
        tag: String,
        seq: u64,
        name: String,
        stream: Arc<Stream>,
    ) -> Outcome {
        cx.check(Access::Read, "queue", &name)?;
        let what = format!("queue '{name}' in vhost '{}'", cx.vhost);
        let Some(prefetch) = self.prefetch.filter(|p| *p > 0) else {
            return Err(Failure::channel(
                ReplyCode::PreconditionFailed,
                format!("consumer prefetch count is not set for '{what}'"),
            ));
        };
        if c.no_ack {
            return Err(Failure::channel(
                ReplyCode::NotImplemented,
                format!("automatic acknowledgement not supported by stream queues {what}"),
            ));
        }
        // A channel-wide prefetch would be credit shared with queues.
        if self
            .flow
            .global_limit
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
        {
            return Err(Failure::channel(
                ReplyCode::NotImplemented,
                format!("{what} does not support global qos"),
            ));
        }
        let now = cx.amqp.broker.now().as_millis() as i64;
        let start = start_of(c.arguments.inner().get("x-stream-offset"), now)?;
        let credit = Arc::new(Semaphore::new(prefetch as usize));
        let readers = reader::start(
            Target {
                namespace: cx.vhost.clone(),
                stream,
                events: cx.events.clone(),
                to: self.to,
                consumer: seq,
                credit: Arc::clone(&credit),
            },
            start,
        );
        cx.entry.consumer_added(ferry_face::ConsumerInfo {
            channel: self.to.id,
            tag: tag.clone(),
            queue: name,
            prefetch: Some(prefetch),
            ack_required: true,
        });
        self.stream_consumers.push(StreamConsumer {
            seq,
            tag: tag.clone(),
            credit,
            _readers: readers,
        });
        if !c.nowait {
            super::basic::consume_ok(cx, self.to.id, &tag);
        }
        Ok(())
    }

    /// Ends a stream consumer by its tag; false if no stream consumer has
    /// it. Records its readers already sent are dropped unwritten (the log
    /// keeps them).
    pub(super) fn cancel_stream(&mut self, cx: &mut Ctx, tag: &str) -> bool {
        let Some(at) = self.stream_consumers.iter().position(|c| c.tag == tag) else {
            return false;
        };
        let c = self.stream_consumers.remove(at);
        cx.entry.consumer_removed(self.to.id, &c.tag);
        true
    }

    /// Ends a stream consumer its reader gave up on (its stream was
    /// deleted); false if no stream consumer has that number.
    pub(super) fn stream_gone(&mut self, cx: &mut Ctx, consumer: u64) -> bool {
        let Some(at) = self.stream_consumers.iter().position(|c| c.seq == consumer) else {
            return false;
        };
        let c = self.stream_consumers.remove(at);
        cx.entry.consumer_removed(self.to.id, &c.tag);
        if cx.cancel_notify {
            cx.out.method(
                self.to.id,
                AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                    consumer_tag: crate::values::short(&c.tag),
                    nowait: true,
                })),
            );
        }
        true
    }

    /// Records a stream consumer's reader sent, each taking one credit.
    pub(super) fn deliver_stream(
        &mut self,
        cx: &mut Ctx,
        consumer: u64,
        messages: Vec<ferry_core::Message>,
    ) {
        let Some(c) = self.stream_consumers.iter().find(|c| c.seq == consumer) else {
            return;
        };
        let (tag, credit) = (c.tag.clone(), Arc::clone(&c.credit));
        for m in messages {
            let delivery_tag = self.next_tag();
            cx.out.deliver(
                self.to.id,
                &tag,
                delivery_tag,
                false,
                m.router.as_deref().unwrap_or(""),
                &m.routing_key,
            );
            cx.out
                .content(self.to.id, properties_of(&m), &m.body, cx.frame_max);
            cx.traffic.delivered += 1;
            self.unacked.push_back(Unacked {
                tag: delivery_tag,
                held: Held::Credit(Arc::clone(&credit)),
            });
        }
        self.unacked_changed(cx);
    }

    /// Runs `work` (which touches files) off the connection task and
    /// answers with what it returns; frames wait meanwhile, as for an
    /// answer that waits for the journal.
    fn answer_off_task(
        &mut self,
        cx: &mut Ctx,
        method: MethodId,
        nowait: bool,
        work: impl FnOnce() -> Result<(AMQPClass, Commit), Failure> + Send + 'static,
    ) -> Outcome {
        cx.paused = true;
        let events = cx.events.clone();
        let to = self.to;
        tokio::spawn(async move {
            let reply = match tokio::task::spawn_blocking(work).await {
                Ok(r) => r,
                Err(_) => Err(Failure::channel(
                    ReplyCode::InternalError,
                    "the change could not be made",
                )),
            };
            let reply = match reply {
                // With nowait there is nothing to send; a failure still
                // closes the channel.
                Ok((r, commit)) => match commit.wait().await {
                    Ok(()) => Ok((!nowait).then(|| Box::new(r))),
                    Err(e) => Err(super::durable::not_durable(&e)),
                },
                Err(f) => Err(f),
            };
            let _ = events.send(Event::Answer { to, reply, method });
        });
        Ok(())
    }

    /// The answer of work done off the connection task.
    pub(super) fn answered(
        &mut self,
        cx: &mut Ctx,
        reply: Result<Option<Box<AMQPClass>>, Failure>,
        method: MethodId,
    ) {
        cx.paused = false;
        match reply {
            Ok(Some(r)) => cx.out.method(self.to.id, *r),
            Ok(None) => {}
            Err(f) => cx.failed_channel = Some((self.to, f, method)),
        }
    }
}

/// A redeclare must agree with the stream on each setting it gives, as
/// RabbitMQ refuses an inequivalent redeclare. Settings it leaves out are
/// the stream's own (a Kafka topic's retention, say).
fn check_equivalent(
    name: &str,
    vhost: &str,
    current: &StreamConfig,
    asked: &StreamConfig,
    args: &amq_protocol::types::FieldTable,
) -> Outcome<()> {
    let shown = |v: Option<String>| v.unwrap_or_else(|| "none".into());
    let checks = [
        ("x-max-age", "retention.ms"),
        ("x-max-length-bytes", "retention.bytes"),
        ("x-stream-max-segment-size-bytes", "segment.bytes"),
    ];
    for (arg, key) in checks {
        if args.inner().get(arg).is_some() && current.get(key) != asked.get(key) {
            return Err(Failure::channel(
                ReplyCode::PreconditionFailed,
                format!(
                    "inequivalent arg '{arg}' for queue '{name}' in vhost '{vhost}': received {key}={} but current is {key}={}",
                    shown(asked.get(key)),
                    shown(current.get(key))
                ),
            ));
        }
    }
    Ok(())
}

/// Records a stream holds now, over all its partitions.
pub(super) fn records(s: &Stream) -> u64 {
    s.partitions()
        .iter()
        .map(|p| p.high_watermark().saturating_sub(p.log_start()))
        .sum()
}

pub(super) fn declare_ok(name: &str, messages: u64) -> AMQPClass {
    // RabbitMQ counts no consumers for a stream queue in declare-ok.
    AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
        queue: crate::values::short(name),
        message_count: u32::try_from(messages).unwrap_or(u32::MAX),
        consumer_count: 0,
    }))
}

/// The engine refused a stream queue change.
fn stream_failure(e: &StreamError) -> Failure {
    let code = match e {
        StreamError::InvalidName(_) | StreamError::InvalidConfig(_) => {
            ReplyCode::PreconditionFailed
        }
        StreamError::TooManyPartitions(_) => ReplyCode::ResourceError,
        _ => ReplyCode::InternalError,
    };
    Failure::channel(code, e.to_string())
}

/// RabbitMQ's refusal of what stream queues do not do.
pub(super) fn not_for_streams(what: &str, name: &str, vhost: &str) -> Failure {
    Failure::channel(
        ReplyCode::NotImplemented,
        format!("{what} not supported by stream queues queue '{name}' in vhost '{vhost}'"),
    )
}
