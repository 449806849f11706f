//! A minimal Kafka connection for the load: requests encoded and
//! responses decoded by the `kafka-protocol` crate, several requests in
//! flight (Kafka answers a connection's requests in order). A task reads
//! whole response frames into a channel, so waiting for one can be given
//! up (a timeout) without losing the place in the stream.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use crate::BenchError;

/// The largest response taken (a fetch asks for less).
const MAX_RESPONSE: usize = 256 << 20;

pub struct Conn {
    frames: mpsc::Receiver<Result<Bytes, BenchError>>,
    reader: tokio::task::JoinHandle<()>,
    write: OwnedWriteHalf,
    next_correlation: i32,
    /// Correlation ids sent and not answered yet, oldest first.
    waiting: std::collections::VecDeque<i32>,
    out: BytesMut,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Reads response frames until the connection ends or fails.
async fn read_frames(
    mut read: BufReader<OwnedReadHalf>,
    tx: mpsc::Sender<Result<Bytes, BenchError>>,
) {
    loop {
        let frame = async {
            let size = read.read_u32().await? as usize;
            if size > MAX_RESPONSE {
                return Err(protocol(format!("a response of {size} bytes")));
            }
            let mut body = vec![0u8; size];
            read.read_exact(&mut body).await?;
            Ok(Bytes::from(body))
        }
        .await;
        let failed = frame.is_err();
        if tx.send(frame).await.is_err() || failed {
            return;
        }
    }
}

fn protocol(what: impl std::fmt::Display) -> BenchError {
    BenchError::Protocol(what.to_string())
}

impl Conn {
    pub async fn connect(addr: &str) -> Result<Conn, BenchError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let (tx, frames) = mpsc::channel(64);
        let reader = tokio::spawn(read_frames(BufReader::with_capacity(1 << 20, read), tx));
        Ok(Conn {
            frames,
            reader,
            write,
            next_correlation: 1,
            waiting: std::collections::VecDeque::new(),
            out: BytesMut::with_capacity(1 << 16),
        })
    }

    /// Queues one request (written by [`Conn::flush`]).
    pub fn queue<Req: Encodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<(), BenchError> {
        let at = self.out.len();
        self.out.put_i32(0);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.next_correlation)
            .with_client_id(Some(StrBytes::from_static_str("ferry-bench")));
        self.waiting.push_back(self.next_correlation);
        self.next_correlation = self.next_correlation.wrapping_add(1);
        header
            .encode(&mut self.out, key.request_header_version(version))
            .and_then(|()| req.encode(&mut self.out, version))
            .map_err(protocol)?;
        let size = (self.out.len() - at - 4) as i32;
        if let Some(head) = self.out.get_mut(at..at + 4) {
            head.copy_from_slice(&size.to_be_bytes());
        }
        Ok(())
    }

    /// The request just queued gets no answer (a produce with acks=0).
    pub fn unanswered(&mut self) {
        self.waiting.pop_back();
    }

    pub async fn flush(&mut self) -> Result<(), BenchError> {
        if !self.out.is_empty() {
            self.write.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// The next response, as `key` at `version` answers. Cancel-safe: a
    /// frame not taken stays in the channel for the next call.
    pub async fn recv<Res: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
    ) -> Result<Res, BenchError> {
        let mut body = match self.frames.recv().await {
            Some(frame) => frame?,
            None => return Err(protocol("the connection closed")),
        };
        let header = ResponseHeader::decode(&mut body, key.response_header_version(version))
            .map_err(protocol)?;
        match self.waiting.pop_front() {
            Some(id) if id == header.correlation_id => {}
            other => {
                return Err(protocol(format!(
                    "{key:?}: answer {} where {other:?} was due",
                    header.correlation_id
                )));
            }
        }
        let res = Res::decode(&mut body, version).map_err(protocol)?;
        if body.has_remaining() {
            return Err(protocol(format!(
                "{key:?} v{version}: {} bytes left after the response",
                body.remaining()
            )));
        }
        Ok(res)
    }

    /// One request and its response.
    pub async fn call<Req: Encodable, Res: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<Res, BenchError> {
        self.queue(key, version, req)?;
        self.flush().await?;
        self.recv(key, version).await
    }
}
