//! Users and their permissions: listed (never a password), and changed for
//! the users made through the API (the config file's are changed there).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use ferry_auth::{AuthError, PermissionConfig, UserConfig};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, created_or_ok, required_body};
use crate::admin::AdminState;

pub(super) fn auth_error(e: AuthError) -> ApiError {
    let status = match e {
        AuthError::UnknownUser(_) => StatusCode::NOT_FOUND,
        AuthError::FromConfig(_) => StatusCode::CONFLICT,
        AuthError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError(status, e.to_string())
}

pub(super) fn users_json(s: &AdminState, with_hashes: bool) -> Vec<Value> {
    let store = s.users.current();
    store
        .users()
        .iter()
        .map(|u| {
            let mut j = serde_json::Map::new();
            j.insert("name".into(), json!(u.name));
            j.insert("tags".into(), json!(u.tags));
            j.insert("loopback_only".into(), json!(u.loopback_only));
            let source = if s.users.is_managed(&u.name) {
                "api"
            } else {
                "config"
            };
            j.insert("source".into(), json!(source));
            let keys = u.access_key_ids();
            if !keys.is_empty() {
                j.insert("access_keys".into(), json!(keys));
            }
            if with_hashes && let Some(h) = u.password_hash() {
                j.insert("password_hash".into(), json!(h));
            }
            Value::Object(j)
        })
        .collect()
}

pub(super) async fn users(State(s): State<AdminState>) -> ApiResult {
    Ok(Json(Value::Array(users_json(&s, false))).into_response())
}

pub(super) fn permissions_json(s: &AdminState) -> Vec<Value> {
    let store = s.users.current();
    let mut list = Vec::new();
    for u in store.users() {
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

/// What PUT /api/users/{name} takes: a password (hashed here) or a hash.
/// (No Debug: the password must not reach a log.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserSpec {
    pub password: Option<String>,
    pub password_hash: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Default: false (a user made to log in from elsewhere).
    #[serde(default)]
    pub loopback_only: bool,
    /// AWS access keys for the SQS API: `[{"id", "secret"}]`; absent: the
    /// user's keys stay as they are (a password change keeps them).
    #[serde(default)]
    pub access_keys: Option<Vec<ferry_auth::AccessKey>>,
}

impl UserSpec {
    /// The user as stored: a password becomes its argon2 hash (slow by
    /// design: call off the async threads).
    pub(super) fn into_config(
        self,
        name: &str,
        kept_keys: Vec<ferry_auth::AccessKey>,
    ) -> Result<UserConfig, ApiError> {
        let hash = match (self.password, self.password_hash) {
            (Some(p), None) if !p.is_empty() => {
                ferry_auth::hash_password(&p).map_err(|e| ApiError::bad_request(e.to_string()))?
            }
            (None, Some(h)) => h,
            _ => {
                return Err(ApiError::bad_request(
                    "a user needs exactly one of a non-empty password and password_hash",
                ));
            }
        };
        Ok(UserConfig {
            name: name.to_owned(),
            password_hash: Some(hash),
            password: None,
            tags: self.tags,
            loopback_only: Some(self.loopback_only),
            access_keys: self.access_keys.unwrap_or(kept_keys),
        })
    }
}

/// Printable, and without ':' (HTTP basic authentication splits on it).
pub(super) fn valid_user_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_control() || c == ':')
}

pub(super) async fn put_user(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let spec: UserSpec = required_body(&bytes, "user")?;
    if !valid_user_name(&name) {
        return Err(ApiError::bad_request(
            "a user name is printable text without ':'",
        ));
    }
    let users = std::sync::Arc::clone(&s.users);
    let who = name.clone();
    // Hashing the password and syncing the users file: off the async threads.
    let created = super::blocking("saving the user", move || {
        let user = spec.into_config(&who, users.access_keys_of(&who))?;
        users.put_user(user).map_err(auth_error)
    })
    .await??;
    // A changed password must not keep working from the login cache.
    s.logins.forget_all();
    Ok((created_or_ok(created), Json(json!({ "user": name }))).into_response())
}

pub(super) async fn delete_user(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult {
    let users = std::sync::Arc::clone(&s.users);
    let who = name.clone();
    // Saving syncs the users file: off the async threads.
    super::blocking("deleting the user", move || users.delete_user(&who))
        .await?
        .map_err(auth_error)?;
    s.logins.forget_all();
    // A deleted user keeps no open connection (and with it, its rights).
    s.connections
        .close_user(&name, &format!("user '{name}' was deleted"));
    Ok(Json(json!({ "deleted": name })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PermissionSpec {
    configure: String,
    write: String,
    read: String,
}

pub(super) async fn put_permission(
    State(s): State<AdminState>,
    Path((ns, user)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let p: PermissionSpec = required_body(&bytes, "permissions")?;
    let created = s
        .users
        .set_permission(PermissionConfig {
            user: user.clone(),
            vhost: ns.clone(),
            configure: p.configure,
            write: p.write,
            read: p.read,
        })
        .map_err(auth_error)?;
    Ok((
        created_or_ok(created),
        Json(json!({ "user": user, "namespace": ns })),
    )
        .into_response())
}

pub(super) async fn delete_permission(
    State(s): State<AdminState>,
    Path((ns, user)): Path<(String, String)>,
) -> ApiResult {
    if !s.users.clear_permission(&user, &ns).map_err(auth_error)? {
        return Err(ApiError::not_found(format!(
            "user '{user}' has no permissions on '{ns}'"
        )));
    }
    Ok(Json(json!({ "cleared": true })).into_response())
}
