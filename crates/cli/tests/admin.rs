//! The admin API of a real ferry: authentication, the broker's state as
//! JSON, and the actions (declare, purge, delete), after AMQP traffic.

mod common;

use common::{Ferry, http, http_with};
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use serde_json::Value;

const GUEST: Option<(&str, &str)> = Some(("guest", "guest"));

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test]
async fn the_admin_api_shows_and_changes_queues_for_administrators_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        "[[users]]\nname = \"guest\"\npassword = \"guest\"\ntags = [\"administrator\"]\n\n\
         [[users]]\nname = \"viewer\"\npassword = \"v\"\n\n\
         [[permissions]]\nuser = \"guest\"\nvhost = \"/\"\nconfigure = \".*\"\nwrite = \".*\"\nread = \".*\"\n",
    )
    .expect("config");
    let ferry = Ferry::start(
        &dir.path().join("data"),
        &["admin", "amqp"],
        &["--config", config.to_str().expect("path")],
    );
    let admin = ferry.addr("admin");
    let call = move |method: &'static str, path: &'static str, auth, body| {
        tokio::task::spawn_blocking(move || http(admin, method, path, auth, body))
    };

    // Health and metrics need no login; the API does.
    assert_eq!(
        call("GET", "/api/health/live", None, None)
            .await
            .expect("call")
            .0,
        200
    );
    let (status, head, body) = call("GET", "/api/overview", None, None)
        .await
        .expect("call");
    assert_eq!(status, 401);
    assert!(
        head.to_lowercase().contains("www-authenticate: basic"),
        "{head}"
    );
    assert_eq!(json(&body)["error"], "unauthorized");
    let wrong = Some(("guest", "nope"));
    assert_eq!(
        call("GET", "/api/overview", wrong, None)
            .await
            .expect("call")
            .0,
        401
    );
    // The console asks for no challenge: the browser must not pop its own
    // login dialog over the console's.
    let (status, head, _) = tokio::task::spawn_blocking(move || {
        http_with(
            admin,
            "GET",
            "/api/overview",
            wrong,
            &[("X-Ferry-Console", "1")],
            None,
        )
    })
    .await
    .expect("call");
    assert_eq!(status, 401);
    assert!(!head.to_lowercase().contains("www-authenticate"), "{head}");
    // Another site's page cannot make the admin's browser change things.
    for (headers, want) in [
        (&[("Origin", "http://evil.example")][..], 403),
        (&[("Sec-Fetch-Site", "cross-site")][..], 403),
        (&[("Content-Type", "text/plain")][..], 415),
    ] {
        let (status, _, body) = tokio::task::spawn_blocking(move || {
            http_with(
                admin,
                "PUT",
                "/api/queues/%2F/csrf",
                GUEST,
                headers,
                Some("{}"),
            )
        })
        .await
        .expect("call");
        assert_eq!(status, want, "{headers:?}: {body}");
    }
    let viewer = Some(("viewer", "v"));
    assert_eq!(
        call("GET", "/api/overview", viewer, None)
            .await
            .expect("call")
            .0,
        403
    );

    let (status, _, body) = call("GET", "/api/overview", GUEST, None)
        .await
        .expect("call");
    assert_eq!(status, 200);
    assert_eq!(json(&body)["version"], env!("CARGO_PKG_VERSION"));

    let (status, _, _) = call("PUT", "/api/queues/%2F/jobs", GUEST, None)
        .await
        .expect("call");
    assert_eq!(status, 201);
    let (status, _, _) = call(
        "PUT",
        "/api/queues/%2F/jobs",
        GUEST,
        Some("{\"durable\": true}"),
    )
    .await
    .expect("call");
    assert_eq!(status, 200, "redeclared with the same settings");
    let (status, _, body) = call("PUT", "/api/queues/%2F/bad", GUEST, Some("{\"color\": 1}"))
        .await
        .expect("call");
    assert_eq!(status, 400, "{body}");
    assert!(
        json(&body)["reason"]
            .as_str()
            .is_some_and(|r| r.contains("color"))
    );

    let conn = ferry.amqp_guest().await;
    let ch = conn.create_channel().await.expect("channel");
    for _ in 0..3 {
        ch.basic_publish(
            "".into(),
            "jobs".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish");
    }
    // The publishes are asynchronous: wait until the queue shows them.
    let mut ready = 0;
    for _ in 0..100 {
        let (_, _, body) = call("GET", "/api/queues/%2F/jobs", GUEST, None)
            .await
            .expect("call");
        ready = json(&body)["messages"]["ready"].as_u64().unwrap_or(0);
        if ready == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(ready, 3);
    let (_, _, body) = call("GET", "/api/queues", GUEST, None).await.expect("call");
    assert!(
        json(&body)
            .as_array()
            .is_some_and(|qs| qs.iter().any(|q| q["name"] == "jobs"))
    );
    let (_, _, body) = call("GET", "/api/routers", GUEST, None)
        .await
        .expect("call");
    assert!(
        json(&body)
            .as_array()
            .is_some_and(|rs| rs.iter().any(|r| r["name"] == "amq.topic"))
    );

    let (status, _, body) = call("DELETE", "/api/queues/%2F/jobs/contents", GUEST, None)
        .await
        .expect("call");
    assert_eq!((status, json(&body)["purged"].as_u64()), (200, Some(3)));
    let (status, _, _) = call("DELETE", "/api/queues/%2F/jobs", GUEST, None)
        .await
        .expect("call");
    assert_eq!(status, 200);
    let (status, _, body) = call("GET", "/api/queues/%2F/jobs", GUEST, None)
        .await
        .expect("call");
    assert_eq!(status, 404);
    assert!(
        json(&body)["reason"]
            .as_str()
            .is_some_and(|r| r.contains("jobs"))
    );
}

/// `ferry status` and `ferry queues ...` against a real ferry.
#[test]
fn the_cli_admin_commands_drive_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ferry = Ferry::start(&dir.path().join("data"), &["admin"], &[]);
    let url = format!("http://{}", ferry.addr("admin"));
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .args(["--admin-url", &url])
            .env_remove("FERRY_ADMIN_PASSWORD")
            .output()
            .expect("run")
    };
    let out = run(&["queues", "create", "jobs"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["queues", "list", "--json"]);
    let list = json(&String::from_utf8_lossy(&out.stdout));
    assert!(
        list.as_array()
            .is_some_and(|qs| qs.iter().any(|q| q["name"] == "jobs"))
    );
    let out = run(&["queues", "list"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("jobs"),
        "a table"
    );
    let out = run(&["status", "--json"]);
    assert!(json(&String::from_utf8_lossy(&out.stdout))["queues"].as_u64() >= Some(1));
    let out = run(&["queues", "purge", "jobs"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("purged (0 messages)"));
    assert!(run(&["queues", "delete", "jobs"]).status.success());
    let out = run(&["queues", "delete", "jobs"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
    let out = run(&["status", "--password", "wrong"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));

    // Messages: publish, peek (nothing taken), consume, dead letters back.
    let defs = dir.path().join("defs.json");
    std::fs::write(
        &defs,
        r#"{"queues": [{"namespace": "/", "name": "dlq"},
            {"namespace": "/", "name": "work", "dead_letter": {"queue": "dlq", "max_deliveries": 1}}]}"#,
    )
    .expect("write");
    let out = run(&["definitions", "import", defs.to_str().expect("path")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 queues"), "{text}");
    let out = run(&["publish", "work", "hello", "--header", "k=v"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["queues", "peek", "work", "--json"]);
    let peeked = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        (&peeked[0]["body"], &peeked[0]["headers"]["k"]),
        (&Value::from("hello"), &Value::from("v"))
    );
    let out = run(&["consume", "work", "--requeue"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello"));
    // Delivered once already: the next receive dead-letters it instead.
    let out = run(&["consume", "work", "--json"]);
    assert_eq!(
        json(&String::from_utf8_lossy(&out.stdout)),
        Value::Array(vec![])
    );
    let out = run(&["dlq", "redrive", "dlq"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("completed (1 of 1 moved)"), "{text}");
    let out = run(&["consume", "work", "--count", "5", "--json"]);
    let got = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(got[0]["body"], "hello", "back in its queue: {got}");

    // Users and permissions.
    let out = run(&[
        "users",
        "add",
        "ops",
        "--user-password",
        "pw",
        "--tag",
        "administrator",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[
        "permissions",
        "set",
        "ops",
        "--read",
        "^work$",
        "--configure",
        "",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["permissions", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("^work$"));
    let out = run(&["users", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ops") && text.contains("api") && text.contains("config"),
        "{text}"
    );
    let out = run(&["status", "--user", "ops", "--password", "pw"]);
    assert!(out.status.success(), "the new administrator logs in");
    assert!(run(&["permissions", "clear", "ops"]).status.success());
    assert!(run(&["users", "delete", "ops"]).status.success());
    let out = run(&["users", "delete", "guest"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("409"));

    let exported = dir.path().join("out.json");
    let out = run(&["definitions", "export", exported.to_str().expect("path")]);
    assert!(out.status.success());
    let doc = json(&std::fs::read_to_string(&exported).expect("read"));
    assert!(doc["queues"].as_array().is_some_and(|q| {
        q.iter()
            .any(|q| q["name"] == "work" && q["dead_letter"]["queue"] == "dlq")
    }));
}
