//! Routers (AMQP exchanges) and their bindings.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use ferry_core::Broker;
use ferry_core::router::{Binding, DEFAULT_ROUTER, Destination, RouterConfig, RouterKind};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::headers::{headers_json, json_headers};
use super::{ApiError, ApiResult, broker, core_error, required_body};
use crate::admin::AdminState;

pub(super) fn kind_name(k: RouterKind) -> &'static str {
    match k {
        RouterKind::Direct => "direct",
        RouterKind::Fanout => "fanout",
        RouterKind::Topic => "topic",
        RouterKind::Headers => "headers",
    }
}

pub(super) fn parse_kind(s: &str) -> Result<RouterKind, ApiError> {
    Ok(match s {
        "direct" => RouterKind::Direct,
        "fanout" => RouterKind::Fanout,
        "topic" => RouterKind::Topic,
        "headers" => RouterKind::Headers,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown router kind '{other}' (direct, fanout, topic or headers)"
            )));
        }
    })
}

pub(super) fn binding_json(b: &Binding) -> Value {
    let (kind, name) = match &b.destination {
        Destination::Queue(q) => ("queue", q),
        Destination::Router(r) => ("router", r),
    };
    json!({
        "source": b.source,
        kind: &**name,
        "key": b.key,
        "arguments": headers_json(&b.args),
    })
}

fn router_json(b: &Broker, ns: &str, name: &str) -> Result<Value, ApiError> {
    let c = b.router_config(ns, name).map_err(core_error)?;
    let bindings = b.bindings(ns, name).map_err(core_error)?;
    Ok(json!({
        "namespace": ns,
        "name": name,
        "kind": kind_name(c.kind),
        "durable": c.durable,
        "auto_delete": c.auto_delete,
        "internal": c.internal,
        "alternate": c.alternate,
        "bindings": bindings.len(),
    }))
}

pub(super) async fn list(State(s): State<AdminState>) -> ApiResult {
    let b = broker(&s)?;
    let mut list = Vec::new();
    for ns in b.namespace_names() {
        for name in b.router_names(&ns).unwrap_or_default() {
            // A router deleted meanwhile is left out.
            if let Ok(r) = router_json(b, &ns, &name) {
                list.push(r);
            }
        }
    }
    Ok(Json(Value::Array(list)).into_response())
}

pub(super) async fn one(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    let b = broker(&s)?;
    let mut r = router_json(b, &ns, &name)?;
    let bindings: Vec<Value> = b
        .bindings(&ns, &name)
        .map_err(core_error)?
        .iter()
        .map(binding_json)
        .collect();
    if let Some(o) = r.as_object_mut() {
        o.insert("bindings".into(), Value::Array(bindings));
    }
    Ok(Json(r).into_response())
}

/// What PUT /api/routers/{namespace}/{name} takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Declare {
    kind: String,
    durable: Option<bool>,
    auto_delete: Option<bool>,
    internal: Option<bool>,
    alternate: Option<String>,
}

pub(super) async fn declare(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let b = broker(&s)?;
    let d: Declare = required_body(&bytes, "router settings")?;
    let mut config = RouterConfig::new(parse_kind(&d.kind)?);
    config.durable = d.durable.unwrap_or(true);
    config.auto_delete = d.auto_delete.unwrap_or(false);
    config.internal = d.internal.unwrap_or(false);
    config.alternate = d.alternate;
    let (created, commit) = b.declare_router(&ns, &name, config).map_err(core_error)?;
    super::durable(commit).await?;
    let status = super::created_or_ok(created);
    Ok((status, Json(router_json(b, &ns, &name)?)).into_response())
}

pub(super) async fn delete(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    let b = broker(&s)?;
    super::durable(b.delete_router(&ns, &name, false).map_err(core_error)?).await?;
    Ok(Json(json!({ "deleted": name })).into_response())
}

/// A binding in a request: a queue or a router as the destination.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BindingSpec {
    queue: Option<String>,
    router: Option<String>,
    #[serde(default)]
    key: String,
    #[serde(default)]
    arguments: Map<String, Value>,
}

impl BindingSpec {
    fn binding(self, source: &str) -> Result<Binding, ApiError> {
        let destination = match (self.queue, self.router) {
            (Some(q), None) => Destination::queue(&q),
            (None, Some(r)) => Destination::router(&r),
            _ => {
                return Err(ApiError::bad_request(
                    "a binding names one destination: \"queue\" or \"router\"",
                ));
            }
        };
        Ok(Binding::new(source, destination, &self.key).with_args(json_headers(self.arguments)))
    }
}

/// The default router's bindings are implicit (every queue by its name).
fn check_bindable(name: &str) -> Result<(), ApiError> {
    if name == DEFAULT_ROUTER {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "the default router's bindings cannot be changed".into(),
        ));
    }
    Ok(())
}

/// The binding a bind or unbind request names, from router `name`.
fn requested_binding(name: &str, bytes: &Bytes) -> Result<Binding, ApiError> {
    check_bindable(name)?;
    let spec: BindingSpec = required_body(bytes, "binding")?;
    spec.binding(name)
}

pub(super) async fn bind(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let b = broker(&s)?;
    let binding = requested_binding(&name, &bytes)?;
    let (added, commit) = b.bind(&ns, binding.clone()).map_err(core_error)?;
    super::durable(commit).await?;
    let status = super::created_or_ok(added);
    Ok((status, Json(binding_json(&binding))).into_response())
}

pub(super) async fn unbind(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let b = broker(&s)?;
    let binding = requested_binding(&name, &bytes)?;
    let (removed, commit) = b.unbind(&ns, binding).map_err(core_error)?;
    super::durable(commit).await?;
    if !removed {
        return Err(ApiError::not_found(format!(
            "router '{name}' has no such binding"
        )));
    }
    Ok(Json(json!({ "unbound": true })).into_response())
}

/// The bindings leading to one queue, from every router of its namespace.
pub(super) async fn queue_bindings(
    State(s): State<AdminState>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    let b = broker(&s)?;
    b.queue(&ns, &name).map_err(core_error)?;
    let mut list = Vec::new();
    for router in b.router_names(&ns).map_err(core_error)? {
        for binding in b.bindings(&ns, &router).unwrap_or_default() {
            if binding.destination.is_queue(&name) {
                list.push(json!({
                    "router": router,
                    "key": binding.key,
                    "arguments": headers_json(&binding.args),
                }));
            }
        }
    }
    Ok(Json(Value::Array(list)).into_response())
}
