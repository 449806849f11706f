//! ferry's users and what they may do, shared by every protocol.
//!
//! A user logs in with a password (checked against an argon2 hash, or a
//! plain secret for the built-in `guest`), may be limited to loopback
//! connections, and has per-namespace (vhost) permissions as RabbitMQ
//! defines them: three regular expressions saying which resources the
//! user may configure (declare, delete), write to (publish, bind to) and
//! read from (consume, get, purge, bind from). A user with no permission
//! entry for a namespace may not use it.

mod config;
mod live;
pub mod scram;

pub use config::{AccessKey, AuthConfig, PermissionConfig, UserConfig};
pub use live::Users;

use std::collections::HashMap;
use std::net::IpAddr;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use regex::Regex;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    #[error("unknown user or wrong password")]
    Refused,
    #[error("user '{0}' may only connect from loopback")]
    LoopbackOnly(String),
    #[error("user '{user}': {detail}")]
    BadConfig { user: String, detail: String },
    #[error("user '{0}' does not exist")]
    UnknownUser(String),
    #[error("user '{0}' is defined in the config file; change it there")]
    FromConfig(String),
    #[error("saving the users: {0}")]
    Io(String),
}

/// What an action does to a resource.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Create or delete it (declare, delete).
    Configure,
    /// Put messages in (publish to an exchange, bind to a queue).
    Write,
    /// Take messages out (consume, get, purge, bind from an exchange).
    Read,
}

/// How a user proves who they are.
#[derive(Clone, Debug)]
enum Secret {
    /// An argon2 PHC string.
    Hash(String),
    /// A plain password (the built-in guest; or a config that gave one).
    Plain(String),
}

/// One namespace's permissions: resource names each access may touch.
#[derive(Clone, Debug)]
pub struct Permission {
    configure: Pattern,
    write: Pattern,
    read: Pattern,
}

impl Permission {
    /// Everything (`.*` for all three).
    pub fn all() -> Self {
        Permission {
            configure: Pattern::any(),
            write: Pattern::any(),
            read: Pattern::any(),
        }
    }
}

/// A permission expression. As in RabbitMQ, it matches anywhere in the
/// name unless anchored, and the empty expression matches nothing.
#[derive(Clone, Debug)]
struct Pattern(Option<Regex>);

impl Pattern {
    fn any() -> Self {
        Pattern(Regex::new(".*").ok())
    }

    fn parse(s: &str) -> Result<Self, regex::Error> {
        if s.is_empty() {
            return Ok(Pattern(None));
        }
        Regex::new(s).map(|r| Pattern(Some(r)))
    }

    fn matches(&self, name: &str) -> bool {
        self.0.as_ref().is_some_and(|r| r.is_match(name))
    }

    /// The expression as configured.
    fn as_str(&self) -> &str {
        self.0.as_ref().map_or("", Regex::as_str)
    }
}

impl Permission {
    /// The configure, write and read expressions, as configured.
    pub fn expressions(&self) -> [&str; 3] {
        [
            self.configure.as_str(),
            self.write.as_str(),
            self.read.as_str(),
        ]
    }
}

#[derive(Clone)]
pub struct User {
    pub name: String,
    secret: Secret,
    /// Only from 127.0.0.0/8 or ::1.
    pub loopback_only: bool,
    /// Free-form roles (`administrator` for the admin API).
    pub tags: Vec<String>,
    /// By namespace.
    permissions: HashMap<String, Permission>,
    /// AWS access keys: (id, secret).
    access_keys: Vec<(String, String)>,
}

impl std::fmt::Debug for User {
    /// Neither the password nor key secrets ever reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("loopback_only", &self.loopback_only)
            .field("tags", &self.tags)
            .field("access_keys", &self.access_key_ids())
            .finish_non_exhaustive()
    }
}

impl User {
    /// Whether the user may use namespace `vhost` at all.
    pub fn may_enter(&self, vhost: &str) -> bool {
        self.permissions.contains_key(vhost)
    }

    /// Whether the user may `access` the resource `name` in `vhost`.
    pub fn may(&self, vhost: &str, access: Access, name: &str) -> bool {
        let Some(p) = self.permissions.get(vhost) else {
            return false;
        };
        match access {
            Access::Configure => p.configure.matches(name),
            Access::Write => p.write.matches(name),
            Access::Read => p.read.matches(name),
        }
    }

    /// The user's permissions by namespace, in name order.
    pub fn permissions(&self) -> Vec<(&str, &Permission)> {
        let mut v: Vec<(&str, &Permission)> = self
            .permissions
            .iter()
            .map(|(ns, p)| (ns.as_str(), p))
            .collect();
        v.sort_by_key(|(ns, _)| *ns);
        v
    }

    /// The ids of the user's AWS access keys (never the secrets).
    pub fn access_key_ids(&self) -> Vec<&str> {
        self.access_keys.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// The argon2 hash of the user's password, if it has one (a plain
    /// password is never shown).
    pub fn password_hash(&self) -> Option<&str> {
        match &self.secret {
            Secret::Hash(h) => Some(h),
            Secret::Plain(_) => None,
        }
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    fn verify(&self, password: &str) -> bool {
        match &self.secret {
            Secret::Plain(p) => constant_time_eq(p.as_bytes(), password.as_bytes()),
            Secret::Hash(h) => PasswordHash::new(h)
                .map(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false),
        }
    }
}

/// The users the broker knows.
#[derive(Clone, Debug)]
pub struct UserStore {
    users: Vec<User>,
    /// Checked against when the name is unknown (hashed if any user is).
    decoy: User,
}

impl UserStore {
    fn new(users: Vec<User>) -> Self {
        let hashed = users.iter().find(|u| matches!(u.secret, Secret::Hash(_)));
        let decoy = User {
            name: String::new(),
            secret: hashed.map_or(Secret::Plain(String::new()), |u| u.secret.clone()),
            loopback_only: true,
            tags: Vec::new(),
            permissions: HashMap::new(),
            access_keys: Vec::new(),
        };
        UserStore { users, decoy }
    }
}

impl Default for UserStore {
    /// RabbitMQ's default: `guest`/`guest`, loopback only, all of `/`.
    fn default() -> Self {
        UserStore::new(vec![User {
            name: "guest".into(),
            secret: Secret::Plain("guest".into()),
            loopback_only: true,
            tags: vec!["administrator".into()],
            permissions: HashMap::from([("/".to_owned(), Permission::all())]),
            access_keys: Vec::new(),
        }])
    }
}

impl UserStore {
    /// Checks a password; returns the user.
    pub fn authenticate(
        &self,
        name: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<&User, AuthError> {
        let Some(user) = self.users.iter().find(|u| u.name == name) else {
            // As slow as a wrong password: timing must not tell which
            // user names exist.
            self.decoy.verify(password);
            return Err(AuthError::Refused);
        };
        if !user.verify(password) {
            return Err(AuthError::Refused);
        }
        if user.loopback_only && !peer.is_loopback() {
            return Err(AuthError::LoopbackOnly(name.to_owned()));
        }
        Ok(user)
    }

    /// The user a verified client certificate names (mutual TLS; the
    /// certificate stands in for the password). Loopback-only users stay so.
    pub fn certified(&self, name: &str, peer: IpAddr) -> Result<&User, AuthError> {
        let user = self.user(name).ok_or(AuthError::Refused)?;
        if user.loopback_only && !peer.is_loopback() {
            return Err(AuthError::LoopbackOnly(name.to_owned()));
        }
        Ok(user)
    }

    /// The user an AWS access key belongs to, and the key's secret.
    pub fn access_key(&self, id: &str) -> Option<(&User, &str)> {
        self.users.iter().find_map(|u| {
            u.access_keys
                .iter()
                .find(|(k, _)| k == id)
                .map(|(_, secret)| (u, secret.as_str()))
        })
    }

    /// Whether any user has an access key (then AWS requests must be signed).
    pub fn has_access_keys(&self) -> bool {
        self.users.iter().any(|u| !u.access_keys.is_empty())
    }

    /// Every user, in configuration order.
    pub fn users(&self) -> &[User] {
        &self.users
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }
}

/// An argon2id PHC string for `password`, with a random salt (what
/// `password-hash` in the config file takes; `ferry hash-password` prints it).
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AuthError::BadConfig {
            user: String::new(),
            detail: format!("hashing failed: {e}"),
        })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const REMOTE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn guest_is_loopback_only_with_all_of_the_default_vhost() {
        let s = UserStore::default();
        let g = s.authenticate("guest", "guest", LOCAL).expect("guest");
        assert!(g.may("/", Access::Configure, "anything"));
        assert!(!g.may_enter("other"));
        assert_eq!(
            s.authenticate("guest", "guest", REMOTE).unwrap_err(),
            AuthError::LoopbackOnly("guest".into())
        );
        assert_eq!(
            s.authenticate("guest", "nope", LOCAL).unwrap_err(),
            AuthError::Refused
        );
        assert_eq!(
            s.authenticate("nobody", "guest", LOCAL).unwrap_err(),
            AuthError::Refused
        );
    }

    #[test]
    fn a_certificate_names_a_known_user_and_keeps_loopback_rules() {
        let s = UserStore::default();
        assert!(s.certified("guest", LOCAL).is_ok());
        assert_eq!(
            s.certified("guest", REMOTE).unwrap_err(),
            AuthError::LoopbackOnly("guest".into())
        );
        assert_eq!(
            s.certified("nobody", LOCAL).unwrap_err(),
            AuthError::Refused
        );
    }

    #[test]
    fn hashed_passwords_verify_and_patterns_match_as_in_rabbitmq() {
        let hash = hash_password("s3cret").expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        let config: AuthConfig = toml::from_str(&format!(
            r#"
            [[users]]
            name = "app"
            password-hash = "{hash}"
            tags = ["monitoring"]

            [[permissions]]
            user = "app"
            vhost = "/"
            configure = "^app\\."
            write = ".*"
            read = ""
            "#
        ))
        .expect("parse");
        let s = config.build().expect("build");
        let app = s
            .authenticate("app", "s3cret", REMOTE)
            .expect("login from anywhere");
        assert!(s.authenticate("app", "wrong", LOCAL).is_err());
        assert!(app.may("/", Access::Configure, "app.jobs"));
        assert!(!app.may("/", Access::Configure, "jobs"));
        assert!(app.may("/", Access::Write, "amq.default"));
        assert!(
            !app.may("/", Access::Read, "app.jobs"),
            "empty matches nothing"
        );
        assert!(app.has_tag("monitoring"));
        assert!(s.user("guest").is_none(), "configured users replace guest");
    }

    #[test]
    fn bad_configs_are_refused_with_the_user_named() {
        for text in [
            "[[users]]\nname = \"a\"\n",
            "[[users]]\nname = \"a\"\npassword-hash = \"not a hash\"\n",
            "[[users]]\nname = \"a\"\npassword = \"x\"\n[[permissions]]\nuser = \"a\"\nvhost = \"/\"\nconfigure = \"(\"\nwrite = \"\"\nread = \"\"\n",
            "[[permissions]]\nuser = \"ghost\"\nvhost = \"/\"\nconfigure = \"\"\nwrite = \"\"\nread = \"\"\n",
        ] {
            let config: AuthConfig = toml::from_str(text).expect("parse");
            assert!(config.build().is_err(), "{text}");
        }
    }
}
