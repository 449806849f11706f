//! Users and their permissions, as configured (never a password or hash).

use axum::extract::State;
use axum::response::{IntoResponse, Json};
use serde_json::{Value, json};

use super::ApiResult;
use crate::admin::AdminState;

pub(super) async fn users(State(s): State<AdminState>) -> ApiResult {
    let list: Vec<Value> = s
        .users
        .users()
        .iter()
        .map(|u| json!({ "name": u.name, "tags": u.tags, "loopback_only": u.loopback_only }))
        .collect();
    Ok(Json(Value::Array(list)).into_response())
}

pub(super) fn permissions_json(s: &AdminState) -> Vec<Value> {
    let mut list = Vec::new();
    for u in s.users.users() {
        for (ns, p) in u.permissions() {
            let [configure, write, read] = p.expressions();
            list.push(json!({
                "user": u.name,
                "namespace": ns,
                "configure": configure,
                "write": write,
                "read": read,
            }));
        }
    }
    list
}

pub(super) async fn permissions(State(s): State<AdminState>) -> ApiResult {
    Ok(Json(Value::Array(permissions_json(&s))).into_response())
}
