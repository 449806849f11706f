//! The SQS load, over the AWS JSON 1.0 protocol on keep-alive HTTP/1.1
//! connections (one per producer and consumer): SendMessageBatch (or
//! SendMessage), ReceiveMessage with long polling, DeleteMessageBatch (or
//! DeleteMessage). Bodies are text: the stamp in hex, then padding.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::stats::{Counters, Ledger, latency_histogram, read_stamp_text, stamp_text};
use crate::{BenchError, ConsumerResult, Ctx, ProducerResult};

pub const DEFAULT_URL: &str = "http://127.0.0.1:9324";

/// One keep-alive connection to the endpoint, made again when the server
/// closes it (some servers close after every response).
struct Http {
    send: SendRequest<Full<Bytes>>,
    host: String,
}

impl Http {
    async fn connect(url: &str) -> Result<Http, BenchError> {
        let host = url
            .strip_prefix("http://")
            .ok_or_else(|| BenchError::Usage(format!("'{url}': expected http://host:port")))?
            .trim_end_matches('/')
            .to_owned();
        let send = Self::open(&host).await?;
        Ok(Http { send, host })
    }

    async fn open(host: &str) -> Result<SendRequest<Full<Bytes>>, BenchError> {
        let stream = TcpStream::connect(host).await?;
        stream.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| BenchError::Protocol(format!("HTTP handshake: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    /// One action; the JSON answer, or the AWS error as an error.
    async fn call(&mut self, action: &str, input: &Value) -> Result<Value, BenchError> {
        if self.send.is_closed() || self.send.ready().await.is_err() {
            self.send = Self::open(&self.host).await?;
        }
        self.call_once(action, input).await
    }

    async fn call_once(&mut self, action: &str, input: &Value) -> Result<Value, BenchError> {
        let body = Bytes::from(input.to_string());
        let req = hyper::Request::post("/")
            .header("host", &self.host)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", format!("AmazonSQS.{action}"))
            .header("x-amz-date", "20260101T000000Z")
            // Endpoints without credentials configured take any key.
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/sqs/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=00",
            )
            .body(Full::new(body))
            .map_err(|e| BenchError::Protocol(e.to_string()))?;
        let resp = self
            .send
            .send_request(req)
            .await
            .map_err(|e| BenchError::Protocol(format!("{action}: {e}")))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| BenchError::Protocol(format!("{action}: {e}")))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(BenchError::Protocol(format!(
                "{action}: HTTP {status}: {v}"
            )));
        }
        Ok(v)
    }

    async fn queue_url(&mut self, name: &str) -> Result<String, BenchError> {
        let mut input = json!({"QueueName": name});
        if name.ends_with(".fifo") {
            input["Attributes"] = json!({"FifoQueue": "true"});
        }
        let v = self.call("CreateQueue", &input).await?;
        v["QueueUrl"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| BenchError::Protocol(format!("CreateQueue: no QueueUrl in {v}")))
    }
}

pub async fn setup(ctx: &Ctx) -> Result<(), BenchError> {
    let mut h = Http::connect(&ctx.url).await?;
    for i in 0..ctx.opts.queues {
        h.queue_url(&ctx.opts.queue_name(i)).await?;
    }
    Ok(())
}

pub async fn teardown(ctx: &Ctx) -> Result<(), BenchError> {
    let mut h = Http::connect(&ctx.url).await?;
    for i in 0..ctx.opts.queues {
        let url = h.queue_url(&ctx.opts.queue_name(i)).await?;
        h.call("DeleteQueue", &json!({"QueueUrl": url})).await?;
    }
    Ok(())
}

/// Message groups per producer on FIFO queues: enough for several
/// receivers to have groups to take while others are in flight.
const GROUPS_PER_PRODUCER: u64 = 16;

/// A send's entry: body, and on FIFO queues its group and deduplication id
/// (unique per producer and sequence number, so nothing is a duplicate;
/// every run has queues of its own).
fn entry(opts: &crate::Options, producer: u16, seq: u64, sent_ns: u64) -> Value {
    let mut e = json!({"MessageBody": body(opts.size, producer, seq, sent_ns)});
    if opts.fifo {
        e["MessageGroupId"] = json!(format!("p{producer}-{}", seq % GROUPS_PER_PRODUCER));
        e["MessageDeduplicationId"] = json!(format!("p{producer}-{seq}"));
    }
    e
}

fn body(size: usize, producer: u16, seq: u64, sent_ns: u64) -> String {
    let mut b = stamp_text(producer, seq, sent_ns);
    b.extend(std::iter::repeat_n('x', size.saturating_sub(b.len())));
    b
}

pub async fn producer(ctx: Ctx, id: u16, queue: String) -> Result<ProducerResult, BenchError> {
    let opts = &ctx.opts;
    let mut h = Http::connect(&ctx.url).await?;
    let url = h.queue_url(&queue).await?;
    let limit = opts.producer_count(id as usize);
    let rate = opts.producer_rate();
    let started = ctx.clock.elapsed_s();
    let mut accepted = Ledger::default();
    let mut seq = 0u64;
    loop {
        if *ctx.stop.borrow() || limit.is_some_and(|l| seq >= l) {
            break;
        }
        let mut n = opts.batch as u64;
        if let Some(l) = limit {
            n = n.min(l - seq);
        }
        if rate > 0.0 {
            let due = ((ctx.clock.elapsed_s() - started) * rate) as u64;
            n = n.min(due.saturating_sub(seq));
            if n == 0 {
                tokio::time::sleep(Duration::from_secs_f64((1.0 / rate).min(0.01))).await;
                continue;
            }
        }
        if opts.batch == 1 {
            let mut input = entry(opts, id, seq, ctx.clock.now_ns());
            input["QueueUrl"] = json!(url);
            match h.call("SendMessage", &input).await {
                Ok(_) => {
                    accepted.record(id, seq);
                }
                Err(e) => failed(&ctx, &e).await,
            }
        } else {
            let entries: Vec<Value> = (0..n)
                .map(|i| {
                    let mut e = entry(opts, id, seq + i, ctx.clock.now_ns());
                    e["Id"] = json!(i.to_string());
                    e
                })
                .collect();
            let input = json!({"QueueUrl": url, "Entries": entries});
            match h.call("SendMessageBatch", &input).await {
                Ok(v) => {
                    for ok in v["Successful"].as_array().into_iter().flatten() {
                        if let Some(i) = ok["Id"].as_str().and_then(|i| i.parse::<u64>().ok()) {
                            accepted.record(id, seq + i);
                        }
                    }
                    let failed = v["Failed"].as_array().map_or(0, Vec::len);
                    Counters::add(&ctx.counters.errors, failed as u64);
                }
                Err(e) => failed(&ctx, &e).await,
            }
        }
        seq += n;
        Counters::add(&ctx.counters.sent, n);
        Counters::add(&ctx.counters.confirmed, n);
    }
    Ok(ProducerResult {
        sent: seq,
        accepted,
        unconfirmed: 0,
        confirm_latency: None,
    })
}

pub async fn consumer(ctx: Ctx, queue: String) -> Result<ConsumerResult, BenchError> {
    let opts = &ctx.opts;
    let mut h = Http::connect(&ctx.url).await?;
    let url = h.queue_url(&queue).await?;
    let mut histogram = latency_histogram();
    let mut ledger = Ledger::default();
    let mut done = ctx.done.clone();
    let receive = json!({
        "QueueUrl": url,
        "MaxNumberOfMessages": opts.batch,
        "WaitTimeSeconds": 1,
        "VisibilityTimeout": 60,
    });
    loop {
        let got = tokio::select! {
            r = h.call("ReceiveMessage", &receive) => r,
            _ = done.changed() => break,
        };
        let v = match got {
            Ok(v) => v,
            Err(e) => {
                failed(&ctx, &e).await;
                continue;
            }
        };
        let messages = v["Messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            continue;
        }
        let now = ctx.clock.now_ns();
        let mut handles = Vec::with_capacity(messages.len());
        for m in &messages {
            match m["Body"].as_str().and_then(read_stamp_text) {
                Some((p, seq, sent_ns)) => {
                    let us = now.saturating_sub(sent_ns) / 1000;
                    let _ = histogram.record(us.max(1));
                    ledger.record(p, seq);
                    ctx.counters
                        .last_latency_us
                        .store(us, std::sync::atomic::Ordering::Relaxed);
                }
                None => Counters::add(&ctx.counters.errors, 1),
            }
            if let Some(r) = m["ReceiptHandle"].as_str() {
                handles.push(r.to_owned());
            }
        }
        Counters::add(&ctx.counters.received, messages.len() as u64);
        let deleted = if handles.len() == 1 {
            h.call(
                "DeleteMessage",
                &json!({"QueueUrl": url, "ReceiptHandle": handles[0]}),
            )
            .await
            .map(drop)
        } else {
            let entries: Vec<Value> = handles
                .iter()
                .enumerate()
                .map(|(i, r)| json!({"Id": i.to_string(), "ReceiptHandle": r}))
                .collect();
            h.call(
                "DeleteMessageBatch",
                &json!({"QueueUrl": url, "Entries": entries}),
            )
            .await
            .map(drop)
        };
        if let Err(e) = deleted {
            failed(&ctx, &e).await;
        }
    }
    Ok(ConsumerResult { histogram, ledger })
}

/// Counts a failed call, logs it, and pauses a little: a broker that
/// refuses everything must not be hammered in a tight loop.
async fn failed(ctx: &Ctx, e: &BenchError) {
    let n = ctx
        .counters
        .errors
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if n < 10 {
        tracing::warn!("{e}");
    } else if n == 10 {
        tracing::warn!("more errors: counted in the report, not logged");
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
}
