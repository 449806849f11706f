//! A lean AMQP 0-9-1 client for load: one connection, frames on ferry's
//! codec, every frame of a turn batched into one write. Only what a load
//! generator needs: log in, open a channel, call synchronous methods,
//! write pre-encoded publishes, read frames.

use amq_protocol::protocol::{AMQPClass, channel, connection};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use amq_protocol::uri::AMQPUri;
use bytes::BytesMut;
use ferry_amqp::codec::{self, Incoming, Output, PROTOCOL_HEADER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::BenchError;

/// The largest frame we ask for.
const FRAME_MAX: u32 = 131_072;

pub struct Client {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    inbuf: BytesMut,
    pub out: Output,
    pub frame_max: u32,
}

fn err(what: impl Into<String>) -> BenchError {
    BenchError::Protocol(what.into())
}

impl Client {
    pub async fn connect(url: &str) -> Result<Client, BenchError> {
        let uri: AMQPUri = url
            .parse()
            .map_err(|e| BenchError::Usage(format!("bad AMQP url '{url}': {e}")))?;
        let stream = TcpStream::connect((uri.authority.host.as_str(), uri.authority.port)).await?;
        stream.set_nodelay(true)?;
        let (reader, writer) = stream.into_split();
        let mut c = Client {
            reader,
            writer,
            inbuf: BytesMut::with_capacity(64 * 1024),
            out: Output::default(),
            frame_max: codec::FRAME_MIN_SIZE,
        };
        c.writer.write_all(PROTOCOL_HEADER).await?;
        match c.method().await? {
            AMQPClass::Connection(connection::AMQPMethod::Start(_)) => {}
            other => return Err(err(format!("expected connection.start, got {other:?}"))),
        }
        let mut caps = FieldTable::default();
        for cap in ["publisher_confirms", "basic.nack", "consumer_cancel_notify"] {
            caps.insert(cap.into(), AMQPValue::Boolean(true));
        }
        let mut props = FieldTable::default();
        props.insert(
            "product".into(),
            AMQPValue::LongString("ferry bench".into()),
        );
        props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        let user = &uri.authority.userinfo;
        let response = format!("\0{}\0{}", user.username, user.password);
        c.out.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: props,
                mechanism: "PLAIN".into(),
                response: LongString::from(response.into_bytes()),
                locale: "en_US".into(),
            })),
        );
        c.flush().await?;
        let tune = match c.method().await? {
            AMQPClass::Connection(connection::AMQPMethod::Tune(t)) => t,
            AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
                return Err(err(format!("login refused: {}", c.reply_text)));
            }
            other => return Err(err(format!("expected connection.tune, got {other:?}"))),
        };
        let frame_max = match tune.frame_max {
            0 => FRAME_MAX,
            n => n.min(FRAME_MAX),
        };
        c.out.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: tune.channel_max,
                frame_max,
                // The generator never idles long enough to need them.
                heartbeat: 0,
            })),
        );
        c.frame_max = frame_max;
        c.out.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: uri.vhost.as_str().into(),
            })),
        );
        c.flush().await?;
        match c.method().await? {
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)) => {}
            other => return Err(err(format!("expected connection.open-ok, got {other:?}"))),
        }
        Ok(c)
    }

    pub async fn open_channel(&mut self, id: u16) -> Result<(), BenchError> {
        self.call(
            id,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        )
        .await
        .map(drop)
    }

    /// Sends a synchronous method and returns the broker's answer.
    pub async fn call(&mut self, ch: u16, m: AMQPClass) -> Result<AMQPClass, BenchError> {
        self.out.method(ch, m);
        self.flush().await?;
        self.method().await
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), BenchError> {
        if !self.out.is_empty() {
            self.writer.write_all(self.out.pending()).await?;
            let n = self.out.len();
            self.out.consume(n);
        }
        Ok(())
    }

    /// The next method (content and heartbeats skipped; setup calls are
    /// one at a time); a close from the broker is an error.
    async fn method(&mut self) -> Result<AMQPClass, BenchError> {
        loop {
            match self.next().await? {
                Incoming::Method(_, c) => {
                    if let AMQPClass::Connection(connection::AMQPMethod::Close(c)) = *c {
                        return Err(err(format!("connection closed: {}", c.reply_text)));
                    }
                    if let AMQPClass::Channel(channel::AMQPMethod::Close(c)) = *c {
                        return Err(err(format!("channel closed: {}", c.reply_text)));
                    }
                    return Ok(*c);
                }
                _ => continue,
            }
        }
    }

    /// The next frame, reading as needed.
    pub async fn next(&mut self) -> Result<Incoming, BenchError> {
        loop {
            if let Some(f) = self.decode()? {
                return Ok(f);
            }
            if self.reader.read_buf(&mut self.inbuf).await? == 0 {
                return Err(err("the broker closed the connection"));
            }
        }
    }

    /// Reads what the socket has now, without waiting; false if nothing.
    pub fn read_now(&mut self) -> Result<bool, BenchError> {
        match self.reader.try_read_buf(&mut self.inbuf) {
            Ok(0) => Err(err("the broker closed the connection")),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until the socket has something to read, and reads it.
    pub async fn read_more(&mut self) -> Result<(), BenchError> {
        if self.reader.read_buf(&mut self.inbuf).await? == 0 {
            return Err(err("the broker closed the connection"));
        }
        Ok(())
    }

    /// The next whole frame already read, if any.
    pub fn decode(&mut self) -> Result<Option<Incoming>, BenchError> {
        codec::decode(&mut self.inbuf, self.frame_max.max(codec::FRAME_MIN_SIZE))
            .map_err(|f| err(f.to_string()))
    }

    /// Closes politely (connection.close, then close-ok) within a second.
    pub async fn close(mut self) {
        self.out.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code: 200,
                reply_text: "bye".into(),
                class_id: 0,
                method_id: 0,
            })),
        );
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            if self.flush().await.is_err() {
                return;
            }
            while let Ok(f) = self.next().await {
                if let Incoming::Method(0, c) = f
                    && matches!(
                        *c,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))
                    )
                {
                    return;
                }
            }
        })
        .await;
    }
}
