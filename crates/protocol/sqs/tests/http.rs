//! The SQS API over a real socket, in both wire protocols, with a minimal
//! HTTP client (the SDK and CLI suites test with real AWS clients).

use std::net::SocketAddr;

use ferry_core::Broker;
use ferry_sqs::{Sqs, SqsConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn start() -> SocketAddr {
    start_with_broker().await.0
}

async fn start_with_broker() -> (SocketAddr, std::sync::Arc<Broker>) {
    let broker = Broker::in_memory();
    let users = std::sync::Arc::new(
        ferry_auth::Users::fixed(ferry_auth::AuthConfig::default()).expect("users"),
    );
    let app = ferry_sqs::router(
        Sqs::new(std::sync::Arc::clone(&broker), SqsConfig::default(), users).expect("sqs"),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, broker)
}

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

async fn http(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("http response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    Reply {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

async fn json_call(addr: SocketAddr, action: &str, input: Value) -> (u16, Value, String) {
    let target = format!("AmazonSQS.{action}");
    let r = http(
        addr,
        "/",
        &[
            ("X-Amz-Target", &target),
            ("Content-Type", "application/x-amz-json-1.0"),
        ],
        &input.to_string(),
    )
    .await;
    let v = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    (r.status, v, r.headers)
}

async fn ok(addr: SocketAddr, action: &str, input: Value) -> Value {
    let (status, v, _) = json_call(addr, action, input).await;
    assert_eq!(status, 200, "{action}: {v}");
    v
}

async fn query_call(addr: SocketAddr, path: &str, form: &str) -> Reply {
    http(
        addr,
        path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form,
    )
    .await
}

#[tokio::test]
async fn json_protocol_send_receive_delete() {
    let addr = start().await;
    let url = ok(addr, "CreateQueue", json!({"QueueName": "jobs"})).await["QueueUrl"]
        .as_str()
        .expect("url")
        .to_owned();
    assert_eq!(url, format!("http://{addr}/000000000000/jobs"));
    let sent = ok(
        addr,
        "SendMessage",
        json!({
            "QueueUrl": url,
            "MessageBody": "hello",
            "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "greeting"}}
        }),
    )
    .await;
    assert_eq!(sent["MD5OfMessageBody"], "5d41402abc4b2a76b9719d911017c592");
    assert!(sent["MD5OfMessageAttributes"].is_string());
    let got = ok(
        addr,
        "ReceiveMessage",
        json!({"QueueUrl": url, "AttributeNames": ["All"], "MessageAttributeNames": ["All"]}),
    )
    .await;
    let m = &got["Messages"][0];
    assert_eq!(m["Body"], "hello");
    assert_eq!(m["MessageId"], sent["MessageId"]);
    assert_eq!(m["MD5OfMessageAttributes"], sent["MD5OfMessageAttributes"]);
    assert_eq!(m["MessageAttributes"]["kind"]["StringValue"], "greeting");
    assert_eq!(m["Attributes"]["ApproximateReceiveCount"], "1");
    let handle = m["ReceiptHandle"].as_str().expect("handle");
    // Invisible while leased.
    let again = ok(addr, "ReceiveMessage", json!({"QueueUrl": url})).await;
    assert!(again.get("Messages").is_none());
    ok(
        addr,
        "DeleteMessage",
        json!({"QueueUrl": url, "ReceiptHandle": handle}),
    )
    .await;
    let attrs = ok(
        addr,
        "GetQueueAttributes",
        json!({"QueueUrl": url, "AttributeNames": ["All"]}),
    )
    .await;
    assert_eq!(attrs["Attributes"]["ApproximateNumberOfMessages"], "0");
    assert_eq!(
        attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"],
        "0"
    );
    assert_eq!(attrs["Attributes"]["VisibilityTimeout"], "30");
    assert_eq!(
        attrs["Attributes"]["QueueArn"],
        "arn:aws:sqs:us-east-1:000000000000:jobs"
    );
}

#[tokio::test]
async fn errors_come_in_each_protocols_shape() {
    let addr = start().await;
    let (status, v, headers) = json_call(
        addr,
        "SendMessage",
        json!({"QueueUrl": format!("http://{addr}/000000000000/nope"), "MessageBody": "x"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(v["__type"], "com.amazonaws.sqs#QueueDoesNotExist");
    assert!(headers.contains("x-amzn-query-error: aws.simplequeueservice.nonexistentqueue;sender"));

    let (status, v, _) = json_call(addr, "NoSuchAction", json!({})).await;
    assert_eq!(
        (status, v["__type"].as_str()),
        (400, Some("com.amazonaws.sqs#InvalidAction"))
    );

    let r = http(
        addr,
        "/",
        &[("X-Amz-Target", "AmazonSQS.ListQueues")],
        "{not json",
    )
    .await;
    assert_eq!(r.status, 400);

    let r = query_call(addr, "/", "Version=2012-11-05").await;
    assert_eq!(r.status, 404, "no Action: {}", r.body);
    assert!(r.body.contains("<Code>UnknownOperationException</Code>"));

    let r = query_call(
        addr,
        "/",
        "Action=GetQueueUrl&Version=2012-11-05&QueueName=nope",
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body
            .contains("<Code>AWS.SimpleQueueService.NonExistentQueue</Code>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("<Type>Sender</Type>"));

    let (status, v, _) = json_call(addr, "CreateQueue", json!({"QueueName": "bad name"})).await;
    assert_eq!(
        (status, v["__type"].as_str()),
        (
            400,
            Some("com.amazon.coral.service#InvalidParameterValueException")
        )
    );
    let (status, v, _) = json_call(addr, "CreateQueue", json!({})).await;
    assert_eq!(
        (status, v["__type"].as_str()),
        (
            400,
            Some("com.amazon.coral.service#MissingRequiredParameterException")
        )
    );
    let (status, v, _) = json_call(
        addr,
        "CreateQueue",
        json!({"QueueName": "q", "Attributes": {"VisibilityTimeout": "99999"}}),
    )
    .await;
    assert_eq!(
        (status, v["__type"].as_str()),
        (400, Some("com.amazonaws.sqs#InvalidAttributeValue"))
    );
    let (status, v, _) = json_call(
        addr,
        "CreateQueue",
        json!({"QueueName": "q", "Attributes": {"Bogus": "1"}}),
    )
    .await;
    assert_eq!(
        (status, v["__type"].as_str()),
        (400, Some("com.amazonaws.sqs#InvalidAttributeName"))
    );
}

#[tokio::test]
async fn query_protocol_round_trip() {
    let addr = start().await;
    let r = query_call(
        addr,
        "/",
        "Action=CreateQueue&Version=2012-11-05&QueueName=legacy&Attribute.1.Name=DelaySeconds&Attribute.1.Value=0",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains("<CreateQueueResponse xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\">")
    );
    assert!(r.body.contains(&format!(
        "<QueueUrl>http://{addr}/000000000000/legacy</QueueUrl>"
    )));
    let r = query_call(
        addr,
        "/000000000000/legacy",
        "Action=SendMessage&MessageBody=%3Cxml%20%26%20text%3E&MessageAttribute.1.Name=n&MessageAttribute.1.Value.DataType=Number&MessageAttribute.1.Value.StringValue=42",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("<MD5OfMessageAttributes>"));
    let r = query_call(
        addr,
        "/000000000000/legacy",
        "Action=ReceiveMessage&AttributeName.1=All&MessageAttributeName.1=All",
    )
    .await;
    assert!(
        r.body.contains("<Body>&lt;xml &amp; text&gt;</Body>"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains(
            "<Attribute><Name>ApproximateReceiveCount</Name><Value>1</Value></Attribute>"
        )
    );
    assert!(r.body.contains("<MessageAttribute><Name>n</Name><Value><DataType>Number</DataType><StringValue>42</StringValue></Value></MessageAttribute>"), "{}", r.body);
    let r = query_call(addr, "/", "Action=ListQueues").await;
    assert!(
        r.body.contains("<ListQueuesResult><QueueUrl>"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn fifo_rules_and_deduplication() {
    let addr = start().await;
    let (status, _, _) = json_call(addr, "CreateQueue", json!({"QueueName": "f.fifo"})).await;
    assert_eq!(status, 400, "a .fifo name needs FifoQueue=true");
    let url = ok(
        addr,
        "CreateQueue",
        json!({"QueueName": "f.fifo", "Attributes": {"FifoQueue": "true"}}),
    )
    .await["QueueUrl"]
        .as_str()
        .expect("url")
        .to_owned();
    let (status, v, _) = json_call(
        addr,
        "SendMessage",
        json!({"QueueUrl": url, "MessageBody": "x"}),
    )
    .await;
    assert_eq!(
        (status, v["__type"].as_str()),
        (
            400,
            Some("com.amazon.coral.service#MissingRequiredParameterException")
        )
    );
    let first = ok(
        addr,
        "SendMessage",
        json!({"QueueUrl": url, "MessageBody": "a", "MessageGroupId": "g", "MessageDeduplicationId": "d1"}),
    )
    .await;
    let dup = ok(
        addr,
        "SendMessage",
        json!({"QueueUrl": url, "MessageBody": "a", "MessageGroupId": "g", "MessageDeduplicationId": "d1"}),
    )
    .await;
    assert_eq!(first["MessageId"], dup["MessageId"]);
    assert_eq!(first["SequenceNumber"], dup["SequenceNumber"]);
    ok(
        addr,
        "SendMessage",
        json!({"QueueUrl": url, "MessageBody": "b", "MessageGroupId": "g", "MessageDeduplicationId": "d2"}),
    )
    .await;
    let got = ok(
        addr,
        "ReceiveMessage",
        json!({"QueueUrl": url, "MaxNumberOfMessages": 10}),
    )
    .await;
    let bodies: Vec<&str> = got["Messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["Body"].as_str().expect("body"))
        .collect();
    assert_eq!(bodies, ["a", "b"]);
}

#[tokio::test]
async fn batches_report_each_entry() {
    let addr = start().await;
    let url = ok(addr, "CreateQueue", json!({"QueueName": "b"})).await["QueueUrl"]
        .as_str()
        .expect("url")
        .to_owned();
    let r = ok(
        addr,
        "SendMessageBatch",
        json!({"QueueUrl": url, "Entries": [
            {"Id": "one", "MessageBody": "1"},
            {"Id": "bad", "MessageBody": "2", "DelaySeconds": 5000},
            {"Id": "three", "MessageBody": "3"}
        ]}),
    )
    .await;
    assert_eq!(r["Successful"].as_array().map(Vec::len), Some(2));
    assert_eq!(r["Failed"][0]["Id"], "bad");
    assert_eq!(r["Failed"][0]["SenderFault"], true);
    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"Id": format!("e{i}"), "MessageBody": "x"}))
        .collect();
    let (status, v, _) = json_call(
        addr,
        "SendMessageBatch",
        json!({"QueueUrl": url, "Entries": eleven}),
    )
    .await;
    assert_eq!(
        (status, v["__type"].as_str()),
        (400, Some("com.amazonaws.sqs#TooManyEntriesInBatchRequest"))
    );
    let (status, v, _) = json_call(
        addr,
        "SendMessageBatch",
        json!({"QueueUrl": url, "Entries": [{"Id": "x", "MessageBody": "1"}, {"Id": "x", "MessageBody": "2"}]}),
    )
    .await;
    assert_eq!(
        (status, v["__type"].as_str()),
        (400, Some("com.amazonaws.sqs#BatchEntryIdsNotDistinct"))
    );
    let got = ok(
        addr,
        "ReceiveMessage",
        json!({"QueueUrl": url, "MaxNumberOfMessages": 10}),
    )
    .await;
    let entries: Vec<Value> = got["Messages"]
        .as_array()
        .expect("messages")
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"Id": format!("d{i}"), "ReceiptHandle": m["ReceiptHandle"]}))
        .chain([json!({"Id": "junk", "ReceiptHandle": "not-a-handle"})])
        .collect();
    let r = ok(
        addr,
        "DeleteMessageBatch",
        json!({"QueueUrl": url, "Entries": entries}),
    )
    .await;
    assert_eq!(r["Successful"].as_array().map(Vec::len), Some(2));
    assert_eq!(r["Failed"][0]["Code"], "ReceiptHandleIsInvalid");
}

#[tokio::test]
async fn long_polling_returns_when_a_message_arrives() {
    let (addr, broker) = start_with_broker().await;
    let url = ok(addr, "CreateQueue", json!({"QueueName": "lp"})).await["QueueUrl"]
        .as_str()
        .expect("url")
        .to_owned();
    let u = url.clone();
    let waiter = tokio::spawn(async move {
        ok(
            addr,
            "ReceiveMessage",
            json!({"QueueUrl": u, "WaitTimeSeconds": 20}),
        )
        .await
    });
    // Send only once the receive waits: this tests the wake-up, not a
    // receive that happened to come after the send.
    let q = broker
        .queue(&SqsConfig::default().namespace, "lp")
        .expect("queue");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while q.waiting() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the receive never waited"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let sent_at = std::time::Instant::now();
    ok(
        addr,
        "SendMessage",
        json!({"QueueUrl": url, "MessageBody": "ping"}),
    )
    .await;
    let got = waiter.await.expect("join");
    assert_eq!(got["Messages"][0]["Body"], "ping");
    assert!(
        sent_at.elapsed() < std::time::Duration::from_secs(10),
        "woken by the arrival, not by the 20 s wait running out"
    );
}
