//! An open connection's state: its channels, the connection-level methods
//! (close, close-ok), and the routing of frames and broker events to
//! channels. Failures end up here: a channel error closes its channel, a
//! connection error closes everything.

use std::collections::HashMap;
use std::sync::Arc;

use amq_protocol::protocol::{AMQPClass, channel, connection};
use bytes::BytesMut;

use super::CLOSE_TIMEOUT;
use super::handshake::Tuned;
use crate::Amqp;
use crate::channel::Channel;
use crate::codec::{self, Incoming, Output};
use crate::error::{Failure, Outcome, ReplyCode, Scope};
use crate::events::{ChannelRef, Event, Events};

type EventReceiver = tokio::sync::mpsc::UnboundedReceiver<Event>;
use crate::values::short;

/// What every channel of a connection shares.
pub struct Ctx {
    pub amqp: Arc<Amqp>,
    /// Owner id of the connection's exclusive queues.
    pub conn_id: u64,
    pub vhost: String,
    /// The user's name (basic.publish's user-id must be it).
    pub user: String,
    /// What the user may do (checked by every method that names a resource).
    pub account: ferry_auth::User,
    pub out: Output,
    pub frame_max: u32,
    pub events: Events,
    pub cancel_notify: bool,
    /// No frames are read while set (an answer waits for the journal).
    pub paused: bool,
    /// A channel that failed outside a method (a change that did not land),
    /// with the (class, method) ids of the method it fails.
    pub failed_channel: Option<(ChannelRef, Failure, (u16, u16))>,
    /// A consumer was cancelled: write the deliveries already on their way
    /// to it before its cancel-ok.
    pub drain_events: bool,
    /// Exclusive queues this connection declared (deleted when it closes).
    pub exclusive: Vec<String>,
    /// The connection published since the resource alarm was raised: it
    /// is held back until the alarm clears.
    pub published: bool,
    /// The connection's entry in the registry operators see.
    pub entry: Arc<ferry_face::Entry>,
    /// Messages counted since the entry was last told (it is told once
    /// per socket read or write, not once per message).
    pub traffic: Traffic,
}

/// Messages published (taken by the broker) and delivered.
#[derive(Default)]
pub struct Traffic {
    pub published: u64,
    pub delivered: u64,
}

impl Ctx {
    /// Tells the registry entry what was counted since the last time.
    pub fn flush_traffic(&mut self) {
        let t = std::mem::take(&mut self.traffic);
        if t.published > 0 {
            self.entry.published(t.published);
        }
        if t.delivered > 0 {
            self.entry.delivered(t.delivered);
        }
    }
}

impl Ctx {
    /// Fails with 403 unless the user may `access` the resource.
    pub fn check(&self, access: ferry_auth::Access, kind: &str, name: &str) -> Outcome {
        crate::auth::check(&self.account, &self.vhost, access, kind, name)
    }
}

pub struct Session {
    pub cx: Ctx,
    /// Broker events for this connection (deliveries, confirms).
    pub events: EventReceiver,
    channels: HashMap<u16, Channel>,
    channel_max: u16,
    generations: u32,
    /// When we sent connection.close (then only close-ok is awaited).
    closing: Option<ferry_core::clock::Timestamp>,
    finished: bool,
    /// The broker's resource alarm, as last seen.
    alarm: Option<String>,
    /// We told the client it is blocked (connection.blocked).
    blocked: bool,
    blocked_notify: bool,
}

impl Session {
    pub fn new(
        amqp: Arc<Amqp>,
        conn_id: u64,
        tuned: Tuned,
        out: Output,
        entry: Arc<ferry_face::Entry>,
    ) -> Self {
        let (events, rx) = tokio::sync::mpsc::unbounded_channel();
        Session {
            events: rx,
            cx: Ctx {
                amqp,
                conn_id,
                vhost: tuned.vhost,
                user: tuned.user.name.clone(),
                account: tuned.user,
                out,
                frame_max: tuned.frame_max,
                events,
                cancel_notify: tuned.cancel_notify,
                paused: false,
                failed_channel: None,
                drain_events: false,
                exclusive: Vec::new(),
                published: false,
                traffic: Traffic::default(),
                entry,
            },
            alarm: None,
            blocked: false,
            blocked_notify: tuned.blocked_notify,
            channels: HashMap::new(),
            channel_max: tuned.channel_max,
            generations: 0,
            closing: None,
            finished: false,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// When our connection.close stops waiting for the client's close-ok.
    pub fn close_deadline(&self) -> Option<ferry_core::clock::Timestamp> {
        self.closing.map(|t| t.plus(CLOSE_TIMEOUT))
    }

    /// Handles every whole frame in `buf`.
    pub fn on_input(&mut self, buf: &mut BytesMut) -> Outcome {
        while !self.finished && !self.input_held() {
            let Some(frame) = codec::decode(buf, self.cx.frame_max)? else {
                break;
            };
            self.on_frame(frame)?;
        }
        self.update_blocked();
        Ok(())
    }

    fn on_frame(&mut self, frame: Incoming) -> Outcome {
        if self.closing.is_some() {
            // Only the answer to our close matters now.
            if let Incoming::Method(0, class) = frame {
                match *class {
                    AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => {
                        self.finished = true;
                    }
                    AMQPClass::Connection(connection::AMQPMethod::Close(_)) => {
                        self.close_ok();
                        self.finished = true;
                    }
                    _ => {}
                }
            }
            return Ok(());
        }
        match frame {
            Incoming::Heartbeat => Ok(()),
            Incoming::Method(0, class) => self.on_connection_method(*class),
            Incoming::Method(id, class) => self.on_channel_method(id, *class),
            Incoming::Header(0, _) | Incoming::Body(0, _) => Err(Failure::connection(
                ReplyCode::UnexpectedFrame,
                "content frame on channel 0",
            )),
            Incoming::Header(id, header) => {
                let ch = open_channel(&mut self.channels, id)?;
                if ch.closing {
                    return Ok(());
                }
                let r = ch.on_header(&mut self.cx, *header);
                self.settle(id, r, (60, 40))
            }
            Incoming::Body(id, body) => {
                let ch = open_channel(&mut self.channels, id)?;
                if ch.closing {
                    return Ok(());
                }
                let r = ch.on_body(&mut self.cx, body);
                self.settle(id, r, (60, 40))
            }
        }
    }

    fn on_connection_method(&mut self, m: AMQPClass) -> Outcome {
        match m {
            AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
                tracing::debug!(code = c.reply_code, text = %c.reply_text, "client closed the connection");
                self.release();
                self.close_ok();
                self.finished = true;
                Ok(())
            }
            AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => {
                self.finished = true;
                Ok(())
            }
            AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(_)) => {
                self.cx.out.method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::UpdateSecretOk(
                        connection::UpdateSecretOk {},
                    )),
                );
                Ok(())
            }
            // Clients may tell us they are blocked; nothing to do.
            AMQPClass::Connection(
                connection::AMQPMethod::Blocked(_) | connection::AMQPMethod::Unblocked(_),
            ) => Ok(()),
            other => Err(Failure::connection(
                ReplyCode::CommandInvalid,
                format!(
                    "method {}.{} is not allowed on channel 0",
                    other.get_amqp_class_id(),
                    other.get_amqp_method_id()
                ),
            )),
        }
    }

    fn on_channel_method(&mut self, id: u16, m: AMQPClass) -> Outcome {
        if id > self.channel_max {
            return Err(Failure::connection(
                ReplyCode::ChannelError,
                format!("channel {id} is above channel_max {}", self.channel_max),
            ));
        }
        let ids = (m.get_amqp_class_id(), m.get_amqp_method_id());
        match m {
            AMQPClass::Channel(channel::AMQPMethod::Open(_)) => {
                if self.channels.contains_key(&id) {
                    return Err(Failure::connection(
                        ReplyCode::ChannelError,
                        format!("second 'channel.open' seen for channel {id}"),
                    ));
                }
                self.generations = self.generations.wrapping_add(1);
                let to = ChannelRef {
                    id,
                    generation: self.generations,
                };
                self.channels.insert(id, Channel::new(to));
                self.cx.entry.channel_opened();
                self.cx.out.method(
                    id,
                    AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
                );
                Ok(())
            }
            AMQPClass::Channel(channel::AMQPMethod::Close(_)) => {
                let mut ch = self.channels.remove(&id).ok_or_else(|| {
                    Failure::connection(
                        ReplyCode::ChannelError,
                        format!("expected 'channel.open' for channel {id}"),
                    )
                })?;
                ch.release(&mut self.cx);
                self.cx.entry.channel_closed(id);
                self.cx.out.method(
                    id,
                    AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                );
                Ok(())
            }
            AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)) => {
                // The answer to our channel.close: the number is free again.
                if self.channels.get(&id).is_some_and(|c| c.closing) {
                    self.channels.remove(&id);
                    self.cx.entry.channel_closed(id);
                }
                Ok(())
            }
            m => {
                let ch = open_channel(&mut self.channels, id)?;
                if ch.closing {
                    return Ok(());
                }
                let r = ch.on_method(&mut self.cx, m);
                if self.cx.drain_events {
                    self.drain_for_cancels();
                }
                self.settle(id, r, ids)
            }
        }
    }

    /// Writes every event already queued (deliveries to consumers just
    /// cancelled among them), then the cancels' cancel-oks.
    fn drain_for_cancels(&mut self) {
        self.cx.drain_events = false;
        while let Ok(ev) = self.events.try_recv() {
            self.on_event(ev);
        }
        self.after_events();
        for ch in self.channels.values_mut() {
            if ch.has_cancels() {
                ch.finish_cancels(&mut self.cx);
            }
        }
    }

    /// Turns a channel's failure into a channel.close (the connection's
    /// failures go up, naming the method that caused them).
    fn settle(&mut self, id: u16, r: Outcome, (class_id, method_id): (u16, u16)) -> Outcome {
        let Err(mut f) = r else {
            return Ok(());
        };
        if f.scope == Scope::Connection {
            f.method.get_or_insert((class_id, method_id));
            return Err(f);
        }
        tracing::debug!(channel = id, error = %f, "closing channel");
        if let Some(ch) = self.channels.get_mut(&id) {
            ch.release(&mut self.cx);
            ch.closing = true;
        }
        self.cx.out.method(
            id,
            AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                reply_code: f.code.code(),
                reply_text: short(&f.text()),
                class_id,
                method_id,
            })),
        );
        Ok(())
    }

    /// Sends connection.close for a connection error and waits for close-ok.
    pub fn fail(&mut self, f: Failure) {
        if self.closing.is_some() || self.finished {
            return;
        }
        tracing::info!(error = %f, "closing connection");
        self.release();
        let (class_id, method_id) = f.method.unwrap_or((0, 0));
        self.cx.out.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code: f.code.code(),
                reply_text: short(&f.text()),
                class_id,
                method_id,
            })),
        );
        self.closing = Some(self.cx.amqp.broker.now());
    }

    fn close_ok(&mut self) {
        self.cx.out.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
        );
    }

    pub fn on_event(&mut self, ev: Event) {
        let to = match &ev {
            Event::Deliver { to, .. }
            | Event::ConsumerGone { to, .. }
            | Event::Confirm { to, .. }
            | Event::Durable { to, .. }
            | Event::Answer { to, .. }
            | Event::StreamDeliver { to, .. }
            | Event::Reply { to, .. } => *to,
        };
        if matches!(ev, Event::Durable { .. } | Event::Answer { .. }) {
            self.cx.paused = false;
        }
        match self.channels.get_mut(&to.id) {
            Some(ch) if ch.to == to && !ch.closing => ch.on_event(&mut self.cx, ev),
            _ => crate::channel::orphan(&self.cx, ev),
        }
        if let Some((to, f, method)) = self.cx.failed_channel.take() {
            let _ = self.settle(to.id, Err(f), method);
        }
    }

    /// After a batch of events: the flow control learns what was written.
    pub fn after_events(&mut self) {
        for ch in self.channels.values_mut() {
            ch.flush_flow(&self.cx);
        }
    }

    /// Whether frames are left unread for now: an answer waits for the
    /// journal, or a resource alarm holds a publishing connection back.
    pub fn input_held(&self) -> bool {
        self.cx.paused || self.is_blocked()
    }

    /// Held back by a resource alarm (it has published while one is raised).
    pub fn is_blocked(&self) -> bool {
        self.alarm.is_some() && self.cx.published
    }

    /// The broker raised or cleared its resource alarm. A publishing
    /// connection is told it is blocked (if its client understands) and
    /// its input is held; consumers and acks on other connections go on.
    pub fn on_alarm(&mut self, alarm: Option<String>) {
        // As RabbitMQ: a connection is blocked when it publishes while the
        // alarm is raised, not for having published before (it may need to
        // ack what it consumes for memory to come down).
        if alarm.is_some() && self.alarm.is_none() {
            self.cx.published = false;
        }
        self.alarm = alarm;
        self.update_blocked();
    }

    /// Sends connection.blocked / unblocked as the state changes.
    pub fn update_blocked(&mut self) {
        let blocked = self.is_blocked();
        if blocked == self.blocked {
            return;
        }
        self.blocked = blocked;
        if !self.blocked_notify {
            return;
        }
        let m = match &self.alarm {
            Some(reason) if blocked => connection::AMQPMethod::Blocked(connection::Blocked {
                reason: short(reason),
            }),
            _ => connection::AMQPMethod::Unblocked(connection::Unblocked {}),
        };
        self.cx.out.method(0, AMQPClass::Connection(m));
    }

    /// Gives back everything the connection held: unacked deliveries
    /// return to their queues, consumers end, exclusive queues go.
    pub fn release(&mut self) {
        for (id, mut ch) in self.channels.drain() {
            ch.release(&mut self.cx);
            self.cx.entry.channel_closed(id);
        }
        let broker = &self.cx.amqp.broker;
        for name in self.cx.exclusive.drain(..) {
            if let Ok(q) = broker.queue(&self.cx.vhost, &name)
                && q.check_owner(Some(self.cx.conn_id)).is_ok()
            {
                let _ = broker.delete_queue(&self.cx.vhost, &name, false, false);
            }
        }
    }

    /// After the connection ends: deliveries still queued for it go back
    /// to their queues.
    pub fn drain_orphans(&mut self) {
        self.events.close();
        while let Ok(ev) = self.events.try_recv() {
            crate::channel::orphan(&self.cx, ev);
        }
    }
}

fn open_channel(channels: &mut HashMap<u16, Channel>, id: u16) -> Outcome<&mut Channel> {
    channels.get_mut(&id).ok_or_else(|| {
        Failure::connection(
            ReplyCode::ChannelError,
            format!("expected 'channel.open' for channel {id}"),
        )
    })
}
