//! The admin API's actions on a real ferry, with a real AMQP client on the
//! other side: peek and publish, redrive a dead-letter queue, routers and
//! bindings, connections and consumers (and closing one), users, and the
//! definitions document carried from one broker to another.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Ferry, http};
use lapin::BasicProperties;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use serde_json::{Value, json};

/// One API call as guest; the body parsed as JSON (null if empty).
async fn api(
    admin: SocketAddr,
    method: &'static str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let path = path.to_owned();
    let (status, _, text) = tokio::task::spawn_blocking(move || {
        let body = body.map(|b| b.to_string());
        http(
            admin,
            method,
            &path,
            Some(("guest", "guest")),
            body.as_deref(),
        )
    })
    .await
    .expect("call");
    let v = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    (status, v)
}

/// Polls `path` until `done` holds (bounded).
async fn until(admin: SocketAddr, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        last = api(admin, "GET", path, None).await.1;
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{path} never got there: {last}");
}

fn ready(q: &Value) -> u64 {
    q["messages"]["ready"].as_u64().unwrap_or(u64::MAX)
}

#[tokio::test]
async fn peek_publish_and_redrive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = Ferry::start(&dir.path().join("data"), &["admin", "amqp"], &[]);
    let admin = ferry.addr("admin");

    // Queues with a dead-letter policy come in through definitions.
    let defs = json!({
        "queues": [
            { "namespace": "/", "name": "dlq" },
            { "namespace": "/", "name": "work",
              "dead_letter": { "queue": "dlq", "on_rejected": true } }
        ]
    });
    let (status, body) = api(admin, "POST", "/api/definitions", Some(defs)).await;
    assert_eq!(
        (status, &body["created"]["queues"]),
        (200, &json!(2)),
        "{body}"
    );

    for (i, text) in ["first", "second"].iter().enumerate() {
        let (status, body) = api(
            admin,
            "POST",
            "/api/queues/%2F/work/messages",
            Some(json!({ "body": text, "headers": { "n": i } })),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = api(
        admin,
        "POST",
        "/api/queues/%2F/work/messages",
        Some(json!({"nobody": 1})),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    let (_, peeked) = api(admin, "GET", "/api/queues/%2F/work/messages?limit=5", None).await;
    let bodies: Vec<&str> = peeked
        .as_array()
        .expect("list")
        .iter()
        .map(|m| m["body"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(bodies, ["first", "second"], "{peeked}");
    assert_eq!(peeked[1]["headers"]["n"], 1);
    assert_eq!(peeked[0]["delivery_count"], 0);
    let (_, q) = api(admin, "GET", "/api/queues/%2F/work", None).await;
    assert_eq!(ready(&q), 2, "a peek takes nothing");

    // A consumer rejects both: they go to the dead-letter queue.
    let conn = ferry.amqp_guest().await;
    let ch = conn.create_channel().await.expect("channel");
    for _ in 0..2 {
        let m = ch
            .basic_get("work".into(), BasicGetOptions::default())
            .await
            .expect("get")
            .expect("a message");
        m.delivery
            .acker
            .reject(BasicRejectOptions { requeue: false })
            .await
            .expect("reject");
    }
    until(admin, "/api/queues/%2F/dlq", |q| ready(q) == 2).await;

    let (status, task) = api(admin, "POST", "/api/queues/%2F/dlq/redrive", None).await;
    assert_eq!(status, 202, "{task}");
    until(admin, "/api/queues/%2F/work", |q| ready(q) == 2).await;
    let tasks = until(admin, "/api/queues/%2F/dlq/redrive", |t| {
        t[0]["status"] == "completed"
    })
    .await;
    assert_eq!(tasks[0]["moved"], 2);
    let (_, q) = api(admin, "GET", "/api/queues/%2F/dlq", None).await;
    assert_eq!(ready(&q), 0);
    let (status, _) = api(admin, "POST", "/api/queues/%2F/nope/redrive", None).await;
    assert_eq!(status, 404);
    conn.close(200, "bye".into()).await.expect("close");
}

#[tokio::test]
async fn routers_bindings_connections_and_definitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = Ferry::start(&dir.path().join("data"), &["admin", "amqp"], &[]);
    let admin = ferry.addr("admin");

    let (status, _) = api(admin, "PUT", "/api/queues/%2F/orders", None).await;
    assert_eq!(status, 201);
    let (status, r) = api(
        admin,
        "PUT",
        "/api/routers/%2F/shop",
        Some(json!({"kind": "topic"})),
    )
    .await;
    assert_eq!((status, &r["kind"]), (201, &json!("topic")), "{r}");
    let (status, r) = api(
        admin,
        "PUT",
        "/api/routers/%2F/bad",
        Some(json!({"kind": "round-robin"})),
    )
    .await;
    assert_eq!(status, 400, "{r}");
    let binding = json!({ "queue": "orders", "key": "order.*" });
    let (status, _) = api(
        admin,
        "POST",
        "/api/routers/%2F/shop/bindings",
        Some(binding.clone()),
    )
    .await;
    assert_eq!(status, 201);
    let (_, r) = api(admin, "GET", "/api/routers/%2F/shop", None).await;
    assert_eq!(r["bindings"][0]["queue"], "orders", "{r}");
    let (_, b) = api(admin, "GET", "/api/queues/%2F/orders/bindings", None).await;
    assert_eq!(
        b,
        json!([{ "router": "shop", "key": "order.*", "arguments": {} }])
    );

    // Connections and consumers, as an AMQP client makes them.
    let conn = ferry.amqp_guest().await;
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_qos(7, Default::default()).await.expect("qos");
    let _consumer = ch
        .basic_consume(
            "orders".into(),
            "watcher".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let consumers = until(admin, "/api/consumers", |c| {
        c.as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    assert_eq!(consumers[0]["tag"], "watcher");
    assert_eq!(consumers[0]["queue"], "orders");
    assert_eq!(consumers[0]["prefetch"], 7);
    let (_, conns) = api(admin, "GET", "/api/connections", None).await;
    let c = &conns[0];
    assert_eq!(
        (&c["protocol"], &c["user"], &c["channels"]),
        (&json!("amqp"), &json!("guest"), &json!(1)),
        "{conns}"
    );
    assert!(c["recv_bytes"].as_u64() > Some(0));
    let id = c["id"].as_str().expect("id").to_owned();
    // The connection counts the messages it publishes and is delivered.
    ch.basic_publish(
        "".into(),
        "orders".into(),
        BasicPublishOptions::default(),
        b"counted",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    until(admin, "/api/connections", |c| {
        c[0]["recv_messages"] == 1 && c[0]["sent_messages"].as_u64() >= Some(1)
    })
    .await;
    let (_, overview) = api(admin, "GET", "/api/overview", None).await;
    assert_eq!(overview["connections"], 1);
    let (_, namespaces) = api(admin, "GET", "/api/namespaces", None).await;
    assert!(
        namespaces
            .as_array()
            .is_some_and(|n| n.iter().any(|x| x["name"] == "/" && x["queues"] == 1)),
        "{namespaces}"
    );
    // A cancelled consumer leaves the list; a closed channel takes its own.
    ch.basic_cancel("watcher".into(), Default::default())
        .await
        .expect("cancel");
    until(admin, "/api/consumers", |c| {
        c.as_array().is_some_and(Vec::is_empty)
    })
    .await;
    let ch2 = conn.create_channel().await.expect("channel");
    // Bound: lapin cancels a consumer whose handle is dropped.
    let _second = ch2
        .basic_consume(
            "orders".into(),
            "second".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    until(admin, "/api/consumers", |c| c[0]["tag"] == "second").await;
    ch2.close(200, "done".into()).await.expect("close channel");
    until(admin, "/api/consumers", |c| {
        c.as_array().is_some_and(Vec::is_empty)
    })
    .await;
    until(admin, "/api/connections", |c| c[0]["channels"] == 1).await;

    // Closing it from the API: the client sees the broker close it.
    let (status, _) = api(admin, "DELETE", &format!("/api/connections/{id}"), None).await;
    assert_eq!(status, 204);
    for _ in 0..200 {
        if !conn.status().connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(!conn.status().connected(), "closed by the broker");
    until(admin, "/api/connections", |c| {
        c.as_array().is_some_and(Vec::is_empty)
    })
    .await;
    let (status, _) = api(admin, "DELETE", &format!("/api/connections/{id}"), None).await;
    assert_eq!(status, 404);

    let (_, users) = api(admin, "GET", "/api/users", None).await;
    assert_eq!(
        users,
        json!([{ "name": "guest", "tags": ["administrator"], "loopback_only": true, "source": "config" }])
    );
    let (_, perms) = api(admin, "GET", "/api/permissions", None).await;
    assert_eq!(perms[0]["configure"], ".*");

    // A user made through the API: it logs in to the API and over AMQP.
    let spec = json!({ "password": "s3cret", "tags": ["administrator"] });
    let (status, body) = api(admin, "PUT", "/api/users/ops", Some(spec)).await;
    assert_eq!(status, 201, "{body}");
    let only_orders = json!({ "configure": "", "write": "", "read": "^orders$" });
    let (status, _) = api(admin, "PUT", "/api/permissions/%2F/ops", Some(only_orders)).await;
    assert_eq!(status, 201);
    let (status, _, _) = tokio::task::spawn_blocking(move || {
        http(admin, "GET", "/api/overview", Some(("ops", "s3cret")), None)
    })
    .await
    .expect("call");
    assert_eq!(status, 200, "the new administrator logs in");
    let url = format!("amqp://ops:s3cret@{}/%2f", ferry.addr("amqp"));
    let connect = lapin::Connection::connect(&url, lapin::ConnectionProperties::default());
    let ops = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .expect("in time")
        .expect("ops connects");
    let och = ops.create_channel().await.expect("channel");
    och.basic_get("orders".into(), BasicGetOptions::default())
        .await
        .expect("ops may read orders");
    let (status, body) = api(
        admin,
        "PUT",
        "/api/users/guest",
        Some(json!({"password": "x"})),
    )
    .await;
    assert_eq!(
        status, 409,
        "the config file's users are changed there: {body}"
    );
    let (status, _) = api(admin, "PUT", "/api/users/bad", Some(json!({"tags": []}))).await;
    assert_eq!(status, 400, "a user needs a password");

    // The definitions of this broker, imported into a fresh one. A client's
    // exclusive queue bound to a durable router is not in them (it would
    // not import anywhere).
    let conn = ferry.amqp_guest().await;
    let ch = conn.create_channel().await.expect("channel");
    let private = ch
        .queue_declare(
            "".into(),
            lapin::options::QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare");
    ch.queue_bind(
        private.name().clone(),
        "shop".into(),
        "order.new".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    let (status, defs) = api(admin, "GET", "/api/definitions", None).await;
    assert_eq!(defs["bindings"].as_array().map(Vec::len), Some(1), "{defs}");
    assert_eq!(status, 200);
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = Ferry::start(&other_dir.path().join("data"), &["admin"], &[]);
    let (status, report) = api(
        other.addr("admin"),
        "POST",
        "/api/definitions",
        Some(defs.clone()),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["created"]["queues"], 1, "{report}");
    assert_eq!(report["created"]["bindings"], 1, "{report}");
    assert_eq!(report["created"]["users"], 1, "{report}");
    assert_eq!(report["created"]["permissions"], 1, "{report}");
    let (status, _, _) = tokio::task::spawn_blocking({
        let other = other.addr("admin");
        move || http(other, "GET", "/api/overview", Some(("ops", "s3cret")), None)
    })
    .await
    .expect("call");
    assert_eq!(status, 200, "the user came over with its password hash");
    let (_, b) = api(
        other.addr("admin"),
        "GET",
        "/api/queues/%2F/orders/bindings",
        None,
    )
    .await;
    assert_eq!(b[0]["router"], "shop");
    let (status, again) = api(other.addr("admin"), "POST", "/api/definitions", Some(defs)).await;
    assert_eq!(
        (status, &again["created"]["queues"]),
        (200, &json!(0)),
        "an import twice changes nothing"
    );
    let (status, bad) = api(
        other.addr("admin"),
        "POST",
        "/api/definitions",
        Some(json!({"queues": [{"name": 1}]})),
    )
    .await;
    assert_eq!(status, 400, "{bad}");

    let (status, _) = api(
        admin,
        "DELETE",
        "/api/routers/%2F/shop/bindings",
        Some(binding.clone()),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = api(
        admin,
        "DELETE",
        "/api/routers/%2F/shop/bindings",
        Some(binding),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = api(admin, "DELETE", "/api/routers/%2F/shop", None).await;
    assert_eq!(status, 200);
    let (status, _) = api(admin, "GET", "/api/routers/%2F/shop", None).await;
    assert_eq!(status, 404);
    let (status, body) = api(admin, "GET", "/api/no/such/thing", None).await;
    assert_eq!((status, &body["error"]), (404, &json!("not found")));
}

#[tokio::test]
async fn users_made_through_the_api_survive_a_restart_and_can_be_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let login = |admin: SocketAddr| {
        tokio::task::spawn_blocking(move || {
            http(admin, "GET", "/api/overview", Some(("ops", "pw")), None).0
        })
    };
    {
        let ferry = Ferry::start(&data, &["admin"], &[]);
        let admin = ferry.addr("admin");
        let spec = json!({ "password": "pw", "tags": ["administrator"] });
        let (status, _) = api(admin, "PUT", "/api/users/ops", Some(spec)).await;
        assert_eq!(status, 201);
        assert_eq!(login(admin).await.expect("call"), 200);
        ferry.kill();
    }
    let ferry = Ferry::start(&data, &["admin", "amqp"], &[]);
    let admin = ferry.addr("admin");
    assert_eq!(
        login(admin).await.expect("call"),
        200,
        "still there after a restart"
    );
    let all = json!({ "configure": ".*", "write": ".*", "read": ".*" });
    let (status, _) = api(admin, "PUT", "/api/permissions/%2F/ops", Some(all)).await;
    assert_eq!(status, 201);
    let url = format!("amqp://ops:pw@{}/%2f", ferry.addr("amqp"));
    let connect = lapin::Connection::connect(&url, lapin::ConnectionProperties::default());
    let ops = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .expect("in time")
        .expect("ops connects");
    let (status, _) = api(admin, "DELETE", "/api/users/ops", None).await;
    assert_eq!(status, 200);
    for _ in 0..200 {
        if !ops.status().connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        !ops.status().connected(),
        "a deleted user's connections are closed"
    );
    assert_eq!(
        login(admin).await.expect("call"),
        401,
        "gone at once, remembered logins too"
    );
    let (status, _) = api(admin, "DELETE", "/api/users/ops", None).await;
    assert_eq!(status, 404);
}
