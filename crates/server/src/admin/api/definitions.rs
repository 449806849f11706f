//! The durable topology as one JSON document (`GET /api/definitions`), and
//! its import (`POST`), which declares whatever is missing: a backup, or a
//! way to copy one broker's setup to another.
//!
//! Users are exported with their argon2 hashes (never a plain password),
//! and an import makes the missing ones as users of the API; those of the
//! config file stay as the file says.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use ferry_auth::{AuthConfig, PermissionConfig, UserConfig};
use ferry_core::Broker;
use ferry_core::queue::{
    DeadLetterPolicy, DeadLetterTarget, DedupConfig, DedupScope, Overflow, QueueConfig,
};
use ferry_core::router::{Binding, DEFAULT_ROUTER, Destination, RouterConfig};
use ferry_core::store::Commit;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::access::{auth_error, permissions_json, users_json};
use super::headers::json_headers;
use super::queues::all_queues;
use super::routers::{binding_json, kind_name, parse_kind};
use super::{ApiError, ApiResult, broker, core_error, required_body};
use crate::admin::AdminState;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Definitions {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    queues: Vec<QueueDef>,
    #[serde(default)]
    routers: Vec<RouterDef>,
    #[serde(default)]
    bindings: Vec<BindingDef>,
    #[serde(default)]
    users: Vec<UserDef>,
    #[serde(default)]
    permissions: Vec<PermissionDef>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct UserDef {
    name: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    loopback_only: bool,
    /// Without it (a user whose password is plain in a config file) the
    /// user cannot be made elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_hash: Option<String>,
    /// `config` or `api`: where the user was defined (ignored on import).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    /// The ids of the user's AWS access keys, for the record: secrets are
    /// never exported, so keys are given to an imported user again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    access_keys: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct PermissionDef {
    user: String,
    namespace: String,
    configure: String,
    write: String,
    read: String,
}

impl PermissionDef {
    fn config(&self) -> PermissionConfig {
        PermissionConfig {
            user: self.user.clone(),
            vhost: self.namespace.clone(),
            configure: self.configure.clone(),
            write: self.write.clone(),
            read: self.read.clone(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct QueueDef {
    namespace: String,
    name: String,
    #[serde(default)]
    fifo: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dedup: Option<DedupDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    visibility_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message_ttl_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    overflow: Option<String>,
    #[serde(default)]
    max_priority: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dead_letter: Option<DeadLetterDef>,
    #[serde(default)]
    auto_delete: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_ms: Option<u64>,
    #[serde(default)]
    single_active_consumer: bool,
    /// The key its messages are sealed with at rest, if not the journal's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encryption_key: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct DedupDef {
    window_ms: u64,
    content_based: bool,
    per_group: bool,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct DeadLetterDef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    router: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    routing_key: Option<String>,
    #[serde(default)]
    discard: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_deliveries: Option<u32>,
    #[serde(default)]
    on_rejected: bool,
    #[serde(default)]
    on_expired: bool,
    #[serde(default)]
    on_overflow: bool,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RouterDef {
    namespace: String,
    name: String,
    kind: String,
    #[serde(default)]
    auto_delete: bool,
    #[serde(default)]
    internal: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alternate: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct BindingDef {
    namespace: String,
    source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    router: Option<String>,
    #[serde(default)]
    key: String,
    #[serde(default)]
    arguments: Map<String, Value>,
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

fn overflow_name(o: Overflow) -> &'static str {
    match o {
        Overflow::DropHead => "drop-head",
        Overflow::RejectPublish => "reject-publish",
        Overflow::RejectPublishDeadLetter => "reject-publish-dlx",
    }
}

impl QueueDef {
    fn of(namespace: &str, name: &str, c: &QueueConfig) -> Self {
        let defaults = QueueConfig::default();
        QueueDef {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            fifo: c.fifo,
            dedup: c.dedup.as_ref().map(|d| DedupDef {
                window_ms: ms(d.window),
                content_based: d.content_based,
                per_group: d.scope == DedupScope::Group,
            }),
            visibility_timeout_ms: (c.visibility_timeout != defaults.visibility_timeout)
                .then(|| ms(c.visibility_timeout)),
            delay_ms: (!c.delay.is_zero()).then(|| ms(c.delay)),
            message_ttl_ms: c.message_ttl.map(ms),
            max_length: c.max_length,
            max_bytes: c.max_bytes,
            overflow: (c.overflow != Overflow::DropHead).then(|| overflow_name(c.overflow).into()),
            max_priority: c.max_priority,
            dead_letter: c.dead_letter.as_ref().map(|p| {
                let (queue, router, routing_key, discard) = match &p.target {
                    DeadLetterTarget::Queue(q) => (Some(q.clone()), None, None, false),
                    DeadLetterTarget::Router {
                        router,
                        routing_key,
                    } => (None, Some(router.clone()), routing_key.clone(), false),
                    DeadLetterTarget::Discard => (None, None, None, true),
                };
                DeadLetterDef {
                    queue,
                    router,
                    routing_key,
                    discard,
                    max_deliveries: p.max_deliveries,
                    on_rejected: p.on_rejected,
                    on_expired: p.on_expired,
                    on_overflow: p.on_overflow,
                }
            }),
            auto_delete: c.auto_delete,
            expires_ms: c.expires.map(ms),
            single_active_consumer: c.single_active_consumer,
            encryption_key: c.encryption_key.clone(),
            attributes: c.attributes.clone(),
        }
    }

    fn config(&self) -> Result<QueueConfig, ApiError> {
        let mut c = QueueConfig {
            fifo: self.fifo,
            ..QueueConfig::default()
        };
        c.dedup = self.dedup.as_ref().map(|d| DedupConfig {
            window: Duration::from_millis(d.window_ms),
            content_based: d.content_based,
            scope: if d.per_group {
                DedupScope::Group
            } else {
                DedupScope::Queue
            },
        });
        if let Some(v) = self.visibility_timeout_ms {
            c.visibility_timeout = Duration::from_millis(v);
        }
        c.delay = Duration::from_millis(self.delay_ms.unwrap_or(0));
        c.message_ttl = self.message_ttl_ms.map(Duration::from_millis);
        c.max_length = self.max_length;
        c.max_bytes = self.max_bytes;
        c.overflow = match self.overflow.as_deref() {
            None | Some("drop-head") => Overflow::DropHead,
            Some("reject-publish") => Overflow::RejectPublish,
            Some("reject-publish-dlx") => Overflow::RejectPublishDeadLetter,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "queue '{}': unknown overflow '{other}'",
                    self.name
                )));
            }
        };
        c.max_priority = self.max_priority;
        c.dead_letter = match &self.dead_letter {
            None => None,
            Some(d) => {
                let target = match (&d.queue, &d.router, d.discard) {
                    (Some(q), None, false) => DeadLetterTarget::Queue(q.clone()),
                    (None, Some(r), false) => DeadLetterTarget::Router {
                        router: r.clone(),
                        routing_key: d.routing_key.clone(),
                    },
                    (None, None, true) => DeadLetterTarget::Discard,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "queue '{}': a dead-letter target is one of queue, router or discard",
                            self.name
                        )));
                    }
                };
                Some(DeadLetterPolicy {
                    target,
                    max_deliveries: d.max_deliveries,
                    on_rejected: d.on_rejected,
                    on_expired: d.on_expired,
                    on_overflow: d.on_overflow,
                })
            }
        };
        c.auto_delete = self.auto_delete;
        c.expires = self.expires_ms.map(Duration::from_millis);
        c.single_active_consumer = self.single_active_consumer;
        c.encryption_key = self.encryption_key.clone();
        c.attributes = self.attributes.clone();
        Ok(c)
    }
}

pub(super) async fn export(State(s): State<AdminState>) -> ApiResult {
    let b = broker(&s)?;
    let mut d = Definitions {
        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        namespaces: b.namespace_names(),
        ..Definitions::default()
    };
    for q in all_queues(b) {
        let c = q.config();
        // What a restart would not bring back is not topology to keep.
        if c.durable && c.exclusive_owner.is_none() {
            d.queues.push(QueueDef::of(q.namespace(), q.name(), &c));
        }
    }
    for ns in &d.namespaces {
        for name in b.router_names(ns).unwrap_or_default() {
            let Ok(c) = b.router_config(ns, &name) else {
                continue;
            };
            if !c.durable || name == DEFAULT_ROUTER {
                continue;
            }
            d.routers.push(RouterDef {
                namespace: ns.clone(),
                name: name.clone(),
                kind: kind_name(c.kind).to_owned(),
                auto_delete: c.auto_delete,
                internal: c.internal,
                alternate: c.alternate.clone(),
            });
        }
    }
    // Only bindings between exported ends: one to an exclusive queue (an
    // AMQP client's amq.gen-… queue) would not import anywhere.
    let exported = |ns: &str, dest: &Destination| match dest {
        Destination::Queue(q) => d.queues.iter().any(|x| x.namespace == ns && x.name == **q),
        Destination::Router(r) => d.routers.iter().any(|x| x.namespace == ns && x.name == **r),
    };
    let mut bindings = Vec::new();
    for r in &d.routers {
        for binding in b.bindings(&r.namespace, &r.name).unwrap_or_default() {
            if !exported(&r.namespace, &binding.destination) {
                continue;
            }
            let mut j = binding_json(&binding);
            if let Some(o) = j.as_object_mut() {
                o.insert("namespace".into(), json!(r.namespace));
            }
            if let Ok(def) = serde_json::from_value::<BindingDef>(j) {
                bindings.push(def);
            }
        }
    }
    d.bindings = bindings;
    // Every user and permission goes out, or the export fails loudly.
    let shaped = |what: &str, e: serde_json::Error| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("exporting {what}: {e}"),
        )
    };
    d.users = users_json(&s, true)
        .into_iter()
        .map(|u| serde_json::from_value(u).map_err(|e| shaped("users", e)))
        .collect::<Result<_, _>>()?;
    d.permissions = permissions_json(&s)
        .into_iter()
        .map(|p| serde_json::from_value(p).map_err(|e| shaped("permissions", e)))
        .collect::<Result<_, _>>()?;
    Ok(Json(d).into_response())
}

/// What an import will declare, every entry checked against the document
/// and the broker before anything changes.
struct Plan {
    namespaces: Vec<String>,
    queues: Vec<(String, String, QueueConfig)>,
    routers: Vec<(String, String, RouterConfig)>,
    bindings: Vec<(String, Binding)>,
}

fn conflict(reason: String) -> ApiError {
    ApiError(StatusCode::CONFLICT, reason)
}

fn plan(b: &Broker, d: Definitions) -> Result<Plan, ApiError> {
    let ns_known = |ns: &str| d.namespaces.iter().any(|n| n == ns) || b.namespace(ns).is_ok();
    let mut queues = Vec::new();
    for q in &d.queues {
        let config = q.config()?;
        b.check_config(&config)
            .map_err(|e| ApiError::bad_request(format!("queue '{}': {e}", q.name)))?;
        if !ns_known(&q.namespace) {
            return Err(ApiError::bad_request(format!(
                "queue '{}': namespace '{}' is neither in the document nor in the broker",
                q.name, q.namespace
            )));
        }
        if let Ok(existing) = b.queue(&q.namespace, &q.name)
            && existing.config() != config
        {
            return Err(conflict(format!(
                "queue '{}' in '{}' exists with other settings",
                q.name, q.namespace
            )));
        }
        queues.push((q.namespace.clone(), q.name.clone(), config));
    }
    let mut routers = Vec::new();
    for r in &d.routers {
        let mut c = RouterConfig::new(parse_kind(&r.kind)?);
        c.auto_delete = r.auto_delete;
        c.internal = r.internal;
        c.alternate = r.alternate.clone();
        if r.name == DEFAULT_ROUTER || !ns_known(&r.namespace) {
            return Err(ApiError::bad_request(format!(
                "router '{}' in '{}': not a router name, or no such namespace",
                r.name, r.namespace
            )));
        }
        if let Ok(existing) = b.router_config(&r.namespace, &r.name)
            && existing != c
        {
            return Err(conflict(format!(
                "router '{}' in '{}' exists with other settings",
                r.name, r.namespace
            )));
        }
        routers.push((r.namespace.clone(), r.name.clone(), c));
    }
    let queue_known = |ns: &str, name: &str| {
        queues.iter().any(|(n, q, _)| n == ns && q == name) || b.queue(ns, name).is_ok()
    };
    let router_known = |ns: &str, name: &str| {
        routers.iter().any(|(n, r, _)| n == ns && r == name) || b.router_config(ns, name).is_ok()
    };
    let mut bindings = Vec::new();
    for bd in d.bindings {
        let destination = match (bd.queue, bd.router) {
            (Some(q), None) if queue_known(&bd.namespace, &q) => Destination::queue(&q),
            (None, Some(r)) if router_known(&bd.namespace, &r) => Destination::router(&r),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "a binding of '{}' in '{}' needs one destination, a queue or a router \
                     that the document or the broker has",
                    bd.source, bd.namespace
                )));
            }
        };
        if !router_known(&bd.namespace, &bd.source) {
            return Err(ApiError::bad_request(format!(
                "a binding's source router '{}' in '{}' is neither in the document nor in the broker",
                bd.source, bd.namespace
            )));
        }
        let binding =
            Binding::new(&bd.source, destination, &bd.key).with_args(json_headers(bd.arguments));
        bindings.push((bd.namespace, binding));
    }
    Ok(Plan {
        namespaces: d.namespaces,
        queues,
        routers,
        bindings,
    })
}

/// The document's users and permissions, checked as the store would check
/// them (hashes, patterns) before anything changes.
fn check_users(d: &Definitions) -> Result<(), ApiError> {
    if let Some(u) = d
        .users
        .iter()
        .find(|u| !super::access::valid_user_name(&u.name))
    {
        return Err(ApiError::bad_request(format!(
            "user name {:?}: a user name is printable text without ':'",
            u.name
        )));
    }
    // A user without a hash is reported, not made: only the others count.
    let made: Vec<&UserDef> = d
        .users
        .iter()
        .filter(|u| u.password_hash.is_some())
        .collect();
    let check = AuthConfig {
        users: made
            .iter()
            .map(|u| UserConfig {
                name: u.name.clone(),
                password: None,
                password_hash: u.password_hash.clone(),
                tags: u.tags.clone(),
                loopback_only: Some(u.loopback_only),
                access_keys: Vec::new(),
            })
            .collect(),
        permissions: d
            .permissions
            .iter()
            .filter(|p| made.iter().any(|u| u.name == p.user))
            .map(PermissionDef::config)
            .collect(),
    };
    if check.users.is_empty() {
        return Ok(());
    }
    check
        .build()
        .map(|_| ())
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

pub(super) async fn import(State(s): State<AdminState>, bytes: Bytes) -> ApiResult {
    let b = std::sync::Arc::clone(broker(&s)?);
    let mut d: Definitions = required_body(&bytes, "definitions")?;
    check_users(&d)?;
    let users = std::mem::take(&mut d.users);
    let permissions = std::mem::take(&mut d.permissions);
    let live = std::sync::Arc::clone(&s.users);
    // Thousands of declares, each journaled: off the async threads.
    let (created, not_imported, commit) = super::blocking(
        "import",
        move || -> Result<([u64; 6], Vec<String>, Commit), ApiError> {
            let plan = plan(&b, d)?;
            let mut created = [0u64; 6];
            // The answer waits for all of it to be durable.
            let mut commit = Commit::done();
            for ns in &plan.namespaces {
                if b.namespace(ns).is_err() {
                    let (_, c) = b.create_namespace(ns).map_err(core_error)?;
                    commit = commit.and(c);
                    created[0] += 1;
                }
            }
            for (ns, name, c) in plan.queues {
                let (declared, c) = b.declare_queue(&ns, &name, c).map_err(core_error)?;
                commit = commit.and(c);
                if declared.created {
                    created[1] += 1;
                }
            }
            for (ns, name, c) in plan.routers {
                let (added, c) = b.declare_router(&ns, &name, c).map_err(core_error)?;
                commit = commit.and(c);
                if added {
                    created[2] += 1;
                }
            }
            for (ns, binding) in plan.bindings {
                let (added, c) = b.bind(&ns, binding).map_err(core_error)?;
                commit = commit.and(c);
                if added {
                    created[3] += 1;
                }
            }
            let mut not_imported = Vec::new();
            for u in users {
                if live.current().user(&u.name).is_some() {
                    continue;
                }
                let Some(hash) = u.password_hash else {
                    not_imported.push(u.name);
                    continue;
                };
                let user = UserConfig {
                    name: u.name,
                    password_hash: Some(hash),
                    password: None,
                    tags: u.tags,
                    loopback_only: Some(u.loopback_only),
                    access_keys: Vec::new(),
                };
                if live.put_user(user).map_err(auth_error)? {
                    created[4] += 1;
                }
            }
            for p in permissions {
                let store = live.current();
                let Some(user) = store.user(&p.user) else {
                    continue;
                };
                let has = user.permissions().iter().any(|(ns, _)| *ns == p.namespace);
                if !has
                    && live.is_managed(&p.user)
                    && live.set_permission(p.config()).map_err(auth_error)?
                {
                    created[5] += 1;
                }
            }
            Ok((created, not_imported, commit))
        },
    )
    .await??;
    super::durable(commit).await?;
    if created[4] > 0 {
        s.logins.forget_all();
    }
    Ok(Json(json!({
        "created": {
            "namespaces": created[0],
            "queues": created[1],
            "routers": created[2],
            "bindings": created[3],
            "users": created[4],
            "permissions": created[5],
        },
        "users_not_imported": not_imported,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_config_survives_the_round_trip() {
        let mut c = QueueConfig::fifo();
        c.message_ttl = Some(Duration::from_secs(60));
        c.max_length = Some(10);
        c.overflow = Overflow::RejectPublishDeadLetter;
        c.dead_letter = Some(DeadLetterPolicy::after_deliveries(
            DeadLetterTarget::Router {
                router: "dlx".into(),
                routing_key: Some("k".into()),
            },
            3,
        ));
        c.attributes
            .insert("amqp.queue-type".into(), "quorum".into());
        let def = QueueDef::of("/", "q", &c);
        let text = serde_json::to_string(&def).expect("json");
        let back: QueueDef = serde_json::from_str(&text).expect("parse");
        assert_eq!(back.config().ok(), Some(c));
    }
}
