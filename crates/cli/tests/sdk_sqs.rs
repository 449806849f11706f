//! The AWS SDK for Rust against a real ferry process: every kind of SQS
//! action, FIFO, dead letters and redrive, batches, visibility, errors.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName, SendMessageBatchRequestEntry,
};

struct Ferry {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Ferry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Ferry {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "serve",
            "--admin-listen",
            "off",
            "--aws-listen",
            "127.0.0.1:0",
            "--kafka-listen",
            "off",
            "--amqp-listen",
            "off",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let addr = line
        .trim()
        .strip_prefix("listening aws ")
        .expect("aws listener")
        .to_owned();
    Ferry {
        child,
        endpoint: format!("http://{addr}"),
        _dir: dir,
    }
}

fn client(endpoint: &str) -> Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(config)
}

async fn create(sqs: &Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create")
        .queue_url
        .expect("url")
}

#[tokio::test]
async fn queue_and_message_actions() {
    let ferry = start();
    let sqs = client(&ferry.endpoint);
    let url = create(&sqs, "sdk").await;
    assert_eq!(
        sqs.get_queue_url()
            .queue_name("sdk")
            .send()
            .await
            .expect("url")
            .queue_url,
        Some(url.clone())
    );
    let listed = sqs
        .list_queues()
        .send()
        .await
        .expect("list")
        .queue_urls
        .unwrap_or_default();
    assert!(listed.contains(&url));
    sqs.set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::VisibilityTimeout, "40")
        .send()
        .await
        .expect("set attributes");
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("get attributes")
        .attributes
        .unwrap_or_default();
    assert_eq!(attrs[&QueueAttributeName::VisibilityTimeout], "40");

    let sent = sqs
        .send_message()
        .queue_url(&url)
        .message_body("from rust")
        .message_attributes(
            "n",
            MessageAttributeValue::builder()
                .data_type("Number")
                .string_value("7")
                .build()
                .expect("attribute"),
        )
        .send()
        .await
        .expect("send");
    let got = sqs
        .receive_message()
        .queue_url(&url)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default();
    let m = &got[0];
    assert_eq!(m.body.as_deref(), Some("from rust"));
    assert_eq!(m.message_id, sent.message_id);
    assert_eq!(m.md5_of_message_attributes, sent.md5_of_message_attributes);
    let handle = m.receipt_handle.clone().expect("handle");
    sqs.change_message_visibility()
        .queue_url(&url)
        .receipt_handle(&handle)
        .visibility_timeout(0)
        .send()
        .await
        .expect("release");
    let again = sqs
        .receive_message()
        .queue_url(&url)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default();
    let count = again[0].attributes.as_ref().and_then(|a| {
        a.get(&MessageSystemAttributeName::ApproximateReceiveCount)
            .cloned()
    });
    assert_eq!(count.as_deref(), Some("2"));
    sqs.delete_message()
        .queue_url(&url)
        .receipt_handle(again[0].receipt_handle.clone().expect("handle"))
        .send()
        .await
        .expect("delete");
    sqs.tag_queue()
        .queue_url(&url)
        .tags("k", "v")
        .send()
        .await
        .expect("tag");
    let tags = sqs
        .list_queue_tags()
        .queue_url(&url)
        .send()
        .await
        .expect("tags")
        .tags;
    assert_eq!(tags.and_then(|t| t.get("k").cloned()).as_deref(), Some("v"));
    sqs.purge_queue()
        .queue_url(&url)
        .send()
        .await
        .expect("purge");
    sqs.delete_queue()
        .queue_url(&url)
        .send()
        .await
        .expect("delete queue");
    let err = sqs
        .get_queue_url()
        .queue_name("sdk")
        .send()
        .await
        .expect_err("gone");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_queue_does_not_exist()),
        "typed error: {err:?}"
    );
}

#[tokio::test]
async fn batches_fifo_and_redrive() {
    let ferry = start();
    let sqs = client(&ferry.endpoint);
    let url = create(&sqs, "batch").await;
    let entries: Vec<_> = (0..10)
        .map(|i| {
            SendMessageBatchRequestEntry::builder()
                .id(format!("e{i}"))
                .message_body(format!("m{i}"))
                .build()
                .expect("entry")
        })
        .collect();
    let r = sqs
        .send_message_batch()
        .queue_url(&url)
        .set_entries(Some(entries))
        .send()
        .await
        .expect("batch");
    assert_eq!(r.successful.len(), 10);
    let got = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default();
    let deletes: Vec<_> = got
        .iter()
        .enumerate()
        .map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(format!("d{i}"))
                .receipt_handle(m.receipt_handle.clone().expect("handle"))
                .build()
                .expect("entry")
        })
        .collect();
    let r = sqs
        .delete_message_batch()
        .queue_url(&url)
        .set_entries(Some(deletes))
        .send()
        .await
        .expect("delete batch");
    assert_eq!(r.successful.len(), got.len());

    // FIFO.
    let fifo = sqs
        .create_queue()
        .queue_name("orders.fifo")
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::ContentBasedDeduplication, "true")
        .send()
        .await
        .expect("fifo")
        .queue_url
        .expect("url");
    for body in ["first", "second", "first"] {
        sqs.send_message()
            .queue_url(&fifo)
            .message_body(body)
            .message_group_id("g")
            .send()
            .await
            .expect("send");
    }
    let got = sqs
        .receive_message()
        .queue_url(&fifo)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default();
    let bodies: Vec<_> = got.iter().filter_map(|m| m.body.as_deref()).collect();
    assert_eq!(
        bodies,
        ["first", "second"],
        "in order, the duplicate dropped"
    );

    // Dead letters, then redrive back.
    let dlq = create(&sqs, "dead").await;
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("arn")
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("arn");
    let src = sqs
        .create_queue()
        .queue_name("source")
        .attributes(
            QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"1"}}"#),
        )
        .send()
        .await
        .expect("source")
        .queue_url
        .expect("url");
    sqs.send_message()
        .queue_url(&src)
        .message_body("poison")
        .send()
        .await
        .expect("send");
    let m = sqs
        .receive_message()
        .queue_url(&src)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default();
    sqs.change_message_visibility()
        .queue_url(&src)
        .receipt_handle(m[0].receipt_handle.clone().expect("handle"))
        .visibility_timeout(0)
        .send()
        .await
        .expect("release");
    let sources = sqs
        .list_dead_letter_source_queues()
        .queue_url(&dlq)
        .send()
        .await
        .expect("sources");
    assert_eq!(sources.queue_urls, vec![src.clone()]);
    sqs.start_message_move_task()
        .source_arn(&dlq_arn)
        .send()
        .await
        .expect("start");
    let mut moved = false;
    for _ in 0..200 {
        let tasks = sqs
            .list_message_move_tasks()
            .source_arn(&dlq_arn)
            .send()
            .await
            .expect("list");
        let status = tasks
            .results
            .unwrap_or_default()
            .first()
            .and_then(|t| t.status.clone());
        if status.as_deref() == Some("COMPLETED") {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(moved, "the move task completed");
    let back = sqs
        .receive_message()
        .queue_url(&src)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default();
    assert_eq!(back[0].body.as_deref(), Some("poison"));
}
