//! A null AMQP broker: it logs anyone in, answers the setup methods, reads
//! and drops every publish, and acks them if confirms are on. Loading it
//! shows what the generator alone can do (the generator must outrun every
//! broker it measures).

use std::net::SocketAddr;

use amq_protocol::protocol::{AMQPClass, basic, channel, confirm, connection, queue};
use amq_protocol::types::{FieldTable, LongString};
use bytes::BytesMut;
use ferry_amqp::codec::{self, Incoming, Output, PROTOCOL_HEADER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::BenchError;

/// Binds `addr` and serves sink connections until the process ends.
pub async fn serve(
    addr: SocketAddr,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), BenchError> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = connection(stream).await;
            });
        }
    });
    Ok((local, task))
}

async fn connection(mut stream: TcpStream) -> Result<(), BenchError> {
    stream.set_nodelay(true)?;
    let mut inbuf = BytesMut::with_capacity(256 * 1024);
    let mut out = Output::default();
    while inbuf.len() < PROTOCOL_HEADER.len() {
        if stream.read_buf(&mut inbuf).await? == 0 {
            return Ok(());
        }
    }
    let _ = inbuf.split_to(PROTOCOL_HEADER.len());
    out.method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
            version_major: 0,
            version_minor: 9,
            server_properties: FieldTable::default(),
            mechanisms: LongString::from(b"PLAIN".to_vec()),
            locales: LongString::from(b"en_US".to_vec()),
        })),
    );
    let mut confirming = false;
    let mut published: u64 = 0;
    let mut acked: u64 = 0;
    loop {
        if !out.is_empty() {
            stream.write_all(out.pending()).await?;
            let n = out.len();
            out.consume(n);
        }
        if stream.read_buf(&mut inbuf).await? == 0 {
            return Ok(());
        }
        while let Some(frame) =
            codec::decode(&mut inbuf, 1 << 20).map_err(|f| BenchError::Protocol(f.to_string()))?
        {
            let Incoming::Method(ch, m) = frame else {
                continue;
            };
            let reply = match *m {
                AMQPClass::Connection(connection::AMQPMethod::StartOk(_)) => Some(
                    AMQPClass::Connection(connection::AMQPMethod::Tune(connection::Tune {
                        channel_max: 2047,
                        frame_max: 131_072,
                        heartbeat: 0,
                    })),
                ),
                AMQPClass::Connection(connection::AMQPMethod::Open(_)) => Some(
                    AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {})),
                ),
                AMQPClass::Connection(connection::AMQPMethod::Close(_)) => {
                    out.method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                            connection::CloseOk {},
                        )),
                    );
                    stream.write_all(out.pending()).await?;
                    return Ok(());
                }
                AMQPClass::Channel(channel::AMQPMethod::Open(_)) => Some(AMQPClass::Channel(
                    channel::AMQPMethod::OpenOk(channel::OpenOk {}),
                )),
                AMQPClass::Queue(queue::AMQPMethod::Declare(d)) => Some(AMQPClass::Queue(
                    queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                        queue: d.queue,
                        message_count: 0,
                        consumer_count: 0,
                    }),
                )),
                AMQPClass::Queue(queue::AMQPMethod::Purge(_)) => Some(AMQPClass::Queue(
                    queue::AMQPMethod::PurgeOk(queue::PurgeOk { message_count: 0 }),
                )),
                AMQPClass::Queue(queue::AMQPMethod::Delete(_)) => Some(AMQPClass::Queue(
                    queue::AMQPMethod::DeleteOk(queue::DeleteOk { message_count: 0 }),
                )),
                AMQPClass::Confirm(confirm::AMQPMethod::Select(_)) => {
                    confirming = true;
                    Some(AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(
                        confirm::SelectOk {},
                    )))
                }
                AMQPClass::Basic(basic::AMQPMethod::Publish(_)) => {
                    published += 1;
                    None
                }
                _ => None,
            };
            if let Some(r) = reply {
                out.method(ch, r);
            }
        }
        // One ack (multiple) for everything read this turn.
        if confirming && published > acked {
            out.method(
                1,
                AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                    delivery_tag: published,
                    multiple: true,
                })),
            );
            acked = published;
        }
    }
}
