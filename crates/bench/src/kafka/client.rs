//! A minimal Kafka connection for the load: requests encoded and
//! responses decoded by the `kafka-protocol` crate, several requests in
//! flight (Kafka answers a connection's requests in order).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::BenchError;

/// The largest response taken (a fetch asks for less).
const MAX_RESPONSE: usize = 256 << 20;

pub struct Conn {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    next_correlation: i32,
    out: BytesMut,
}

fn protocol(what: impl std::fmt::Display) -> BenchError {
    BenchError::Protocol(what.to_string())
}

impl Conn {
    pub async fn connect(addr: &str) -> Result<Conn, BenchError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        Ok(Conn {
            read: BufReader::with_capacity(1 << 20, read),
            write,
            next_correlation: 1,
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

    pub async fn flush(&mut self) -> Result<(), BenchError> {
        if !self.out.is_empty() {
            self.write.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// The next response, as `key` at `version` answers.
    pub async fn recv<Res: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
    ) -> Result<Res, BenchError> {
        let size = self.read.read_u32().await? as usize;
        if size > MAX_RESPONSE {
            return Err(protocol(format!("a response of {size} bytes")));
        }
        let mut body = vec![0u8; size];
        self.read.read_exact(&mut body).await?;
        let mut body = Bytes::from(body);
        ResponseHeader::decode(&mut body, key.response_header_version(version))
            .map_err(protocol)?;
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
