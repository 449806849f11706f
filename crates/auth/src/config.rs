//! Users and permissions as the config file gives them.
//!
//! ```toml
//! [[users]]
//! name = "app"
//! password-hash = "$argon2id$v=19$..."   # from `ferry hash-password`
//! tags = ["administrator"]
//! loopback-only = false                  # default: true for guest only
//! access-keys = [{ id = "AKIDAPP", secret = "..." }]   # SQS (SigV4)
//!
//! [[permissions]]
//! user = "app"
//! vhost = "/"
//! configure = "^app\\."
//! write = ".*"
//! read = ".*"
//! ```

use std::collections::HashMap;

use argon2::password_hash::phc::PasswordHash;
use serde::{Deserialize, Serialize};

use crate::{AuthError, Pattern, Permission, Secret, User, UserStore};

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub permissions: Vec<PermissionConfig>,
}

#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// An argon2 PHC string (preferred).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// A plain password (kept in memory as given; prefer a hash).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loopback_only: Option<bool>,
    /// AWS access keys (SigV4 needs the secret itself, as AWS keeps it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_keys: Vec<AccessKey>,
}

impl std::fmt::Debug for UserConfig {
    /// The password never reaches a log (a hash is no secret to hide).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("password_hash", &self.password_hash)
            .field("tags", &self.tags)
            .field("loopback_only", &self.loopback_only)
            .field("access_keys", &self.access_keys)
            .finish_non_exhaustive()
    }
}

/// An AWS access key id and its secret.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for AccessKey {
    /// The secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PermissionConfig {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

impl AuthConfig {
    /// RabbitMQ's default: `guest`/`guest`, an administrator from loopback
    /// only, with all of `/`.
    pub fn default_guest() -> Self {
        AuthConfig {
            users: vec![UserConfig {
                name: "guest".into(),
                password_hash: None,
                password: Some("guest".into()),
                tags: vec!["administrator".into()],
                loopback_only: Some(true),
                access_keys: Vec::new(),
            }],
            permissions: vec![PermissionConfig {
                user: "guest".into(),
                vhost: "/".into(),
                configure: ".*".into(),
                write: ".*".into(),
                read: ".*".into(),
            }],
        }
    }

    /// The user store; with no users configured, RabbitMQ's default guest.
    pub fn build(&self) -> Result<UserStore, AuthError> {
        if self.users.is_empty() && self.permissions.is_empty() {
            return Ok(UserStore::default());
        }
        let bad = |user: &str, detail: String| AuthError::BadConfig {
            user: user.to_owned(),
            detail,
        };
        let mut users: Vec<User> = Vec::with_capacity(self.users.len());
        for u in &self.users {
            if users.iter().any(|x| x.name == u.name) {
                return Err(bad(&u.name, "listed twice".into()));
            }
            for k in &u.access_keys {
                let taken = users
                    .iter()
                    .any(|x| x.access_keys.iter().any(|(id, _)| *id == k.id));
                if taken || u.access_keys.iter().filter(|o| o.id == k.id).count() > 1 {
                    return Err(bad(&u.name, format!("access key {} is listed twice", k.id)));
                }
                if k.id.is_empty() || k.secret.is_empty() {
                    return Err(bad(
                        &u.name,
                        "an access key needs an id and a secret".into(),
                    ));
                }
            }
            let secret = match (&u.password_hash, &u.password) {
                (Some(h), None) => {
                    PasswordHash::new(h).map_err(|e| {
                        bad(&u.name, format!("password-hash is not a PHC string: {e}"))
                    })?;
                    Secret::Hash(h.clone())
                }
                (None, Some(p)) => {
                    tracing::warn!(user = %u.name, "a plain password in the config file; prefer password-hash (ferry hash-password)");
                    Secret::Plain(p.clone())
                }
                _ => {
                    return Err(bad(
                        &u.name,
                        "needs exactly one of password-hash and password".into(),
                    ));
                }
            };
            users.push(User {
                name: u.name.clone(),
                secret,
                loopback_only: u.loopback_only.unwrap_or(u.name == "guest"),
                tags: u.tags.clone(),
                permissions: HashMap::new(),
                access_keys: u
                    .access_keys
                    .iter()
                    .map(|k| (k.id.clone(), k.secret.clone()))
                    .collect(),
            });
        }
        for p in &self.permissions {
            let user = users
                .iter_mut()
                .find(|u| u.name == p.user)
                .ok_or_else(|| bad(&p.user, "has permissions but is not in [[users]]".into()))?;
            let pattern = |which: &str, s: &str| {
                Pattern::parse(s).map_err(|e| {
                    bad(
                        &p.user,
                        format!("{which} pattern for vhost '{}': {e}", p.vhost),
                    )
                })
            };
            user.permissions.insert(
                p.vhost.clone(),
                Permission {
                    configure: pattern("configure", &p.configure)?,
                    write: pattern("write", &p.write)?,
                    read: pattern("read", &p.read)?,
                },
            );
        }
        Ok(UserStore::new(users))
    }
}
