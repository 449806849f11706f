//! The users a running broker knows, changeable while it runs.
//!
//! Two sources, each owning its users: the config file (read at start,
//! changed only by editing the file; with no users there, the default
//! `guest`), and the users made through the admin API, kept in a JSON file
//! in the data directory so they survive a restart. A name belongs to one
//! source. Every change builds a new [`UserStore`] and swaps it in: a login
//! sees one consistent store, and connections already open keep the rights
//! they logged in with (as in RabbitMQ).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use crate::{AuthConfig, AuthError, PermissionConfig, UserConfig, UserStore};

pub struct Users {
    config: AuthConfig,
    /// The users made at run time, and where they are kept.
    managed: Mutex<AuthConfig>,
    file: Option<PathBuf>,
    current: RwLock<Arc<UserStore>>,
}

fn io(e: impl std::fmt::Display) -> AuthError {
    AuthError::Io(e.to_string())
}

impl Users {
    /// The users of `config` (the default guest if it has none) and those
    /// saved in `file`, if it exists.
    pub fn open(config: AuthConfig, file: Option<PathBuf>) -> Result<Users, AuthError> {
        let config = if config.users.is_empty() && config.permissions.is_empty() {
            AuthConfig::default_guest()
        } else {
            config
        };
        let managed = match &file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path).map_err(io)?;
                serde_json::from_str(&text)
                    .map_err(|e| AuthError::Io(format!("{}: {e}", path.display())))?
            }
            _ => AuthConfig::default(),
        };
        let store = combine(&config, &managed)?;
        Ok(Users {
            config,
            managed: Mutex::new(managed),
            file,
            current: RwLock::new(Arc::new(store)),
        })
    }

    /// Fixed users, nothing saved (tests, embedded brokers).
    pub fn fixed(config: AuthConfig) -> Result<Users, AuthError> {
        Users::open(config, None)
    }

    /// The store as it is now.
    pub fn current(&self) -> Arc<UserStore> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether the user was made through the API (false: the config file's,
    /// or unknown).
    pub fn is_managed(&self, name: &str) -> bool {
        self.managed().users.iter().any(|u| u.name == name)
    }

    /// The access keys of a user made through the API (kept when the user
    /// is replaced without naming keys).
    pub fn access_keys_of(&self, name: &str) -> Vec<crate::AccessKey> {
        self.managed()
            .users
            .iter()
            .find(|u| u.name == name)
            .map(|u| u.access_keys.clone())
            .unwrap_or_default()
    }

    fn managed(&self) -> MutexGuard<'_, AuthConfig> {
        self.managed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `change` to the managed users; checks, saves and swaps in
    /// the result, or changes nothing.
    fn change<T>(
        &self,
        change: impl FnOnce(&mut AuthConfig) -> Result<T, AuthError>,
    ) -> Result<T, AuthError> {
        let mut managed = self.managed();
        let mut next = managed.clone();
        let out = change(&mut next)?;
        let store = combine(&self.config, &next)?;
        if let Some(path) = &self.file {
            save(path, &next)?;
        }
        *managed = next;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(store);
        Ok(out)
    }

    fn in_config(&self, name: &str) -> bool {
        self.config.users.iter().any(|u| u.name == name)
    }

    /// Creates or replaces a user made through the API. Returns whether it
    /// was created.
    pub fn put_user(&self, user: UserConfig) -> Result<bool, AuthError> {
        if self.in_config(&user.name) {
            return Err(AuthError::FromConfig(user.name));
        }
        self.change(|m| {
            let created = match m.users.iter_mut().find(|u| u.name == user.name) {
                Some(u) => {
                    *u = user;
                    false
                }
                None => {
                    m.users.push(user);
                    true
                }
            };
            Ok(created)
        })
    }

    /// Deletes a user made through the API, with its permissions.
    pub fn delete_user(&self, name: &str) -> Result<(), AuthError> {
        if self.in_config(name) {
            return Err(AuthError::FromConfig(name.to_owned()));
        }
        self.change(|m| {
            let before = m.users.len();
            m.users.retain(|u| u.name != name);
            if m.users.len() == before {
                return Err(AuthError::UnknownUser(name.to_owned()));
            }
            m.permissions.retain(|p| p.user != name);
            Ok(())
        })
    }

    /// Sets a managed user's permissions on a namespace. Returns whether
    /// it had none there before.
    pub fn set_permission(&self, p: PermissionConfig) -> Result<bool, AuthError> {
        if self.in_config(&p.user) {
            return Err(AuthError::FromConfig(p.user));
        }
        self.change(|m| {
            if !m.users.iter().any(|u| u.name == p.user) {
                return Err(AuthError::UnknownUser(p.user.clone()));
            }
            let created = match m
                .permissions
                .iter_mut()
                .find(|x| x.user == p.user && x.vhost == p.vhost)
            {
                Some(x) => {
                    *x = p;
                    false
                }
                None => {
                    m.permissions.push(p);
                    true
                }
            };
            Ok(created)
        })
    }

    /// Removes a managed user's permissions on a namespace; false if it had none.
    pub fn clear_permission(&self, user: &str, vhost: &str) -> Result<bool, AuthError> {
        if self.in_config(user) {
            return Err(AuthError::FromConfig(user.to_owned()));
        }
        self.change(|m| {
            let before = m.permissions.len();
            m.permissions
                .retain(|p| !(p.user == user && p.vhost == vhost));
            Ok(m.permissions.len() != before)
        })
    }
}

/// Both sources as one store; a name in both is refused.
fn combine(config: &AuthConfig, managed: &AuthConfig) -> Result<UserStore, AuthError> {
    if let Some(u) = managed
        .users
        .iter()
        .find(|u| config.users.iter().any(|c| c.name == u.name))
    {
        return Err(AuthError::FromConfig(u.name.clone()));
    }
    let mut all = config.clone();
    all.users.extend(managed.users.iter().cloned());
    all.permissions.extend(managed.permissions.iter().cloned());
    all.build()
}

/// Writes the managed users beside their file and renames it into place:
/// a crash leaves the old file or the new, never half of one; the
/// directory is synced too, so a revoked user does not come back after a
/// power loss. Only the broker's user may read it (it holds key secrets).
fn save(path: &std::path::Path, managed: &AuthConfig) -> Result<(), AuthError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = serde_json::to_string_pretty(managed).map_err(io)?;
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn user(name: &str, password: &str) -> UserConfig {
        UserConfig {
            name: name.into(),
            password_hash: None,
            password: Some(password.into()),
            tags: Vec::new(),
            loopback_only: None,
            access_keys: Vec::new(),
        }
    }

    fn all(user: &str, vhost: &str) -> PermissionConfig {
        PermissionConfig {
            user: user.into(),
            vhost: vhost.into(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        }
    }

    #[test]
    fn api_users_are_saved_and_come_back() {
        let dir = std::env::temp_dir().join(format!("ferry-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("users.json");
        let _ = std::fs::remove_file(&file);
        let users = Users::open(AuthConfig::default(), Some(file.clone())).expect("open");
        assert!(users.put_user(user("app", "pw")).expect("put"));
        assert!(users.set_permission(all("app", "/")).expect("permit"));
        let store = users.current();
        let app = store.authenticate("app", "pw", LOCAL).expect("login");
        assert!(app.may_enter("/"));
        assert!(
            store.authenticate("guest", "guest", LOCAL).is_ok(),
            "guest stays"
        );

        let again = Users::open(AuthConfig::default(), Some(file.clone())).expect("reopen");
        assert!(again.current().authenticate("app", "pw", LOCAL).is_ok());
        again.delete_user("app").expect("delete");
        assert!(again.current().authenticate("app", "pw", LOCAL).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_config_files_users_are_not_changed_through_the_api() {
        let users = Users::fixed(AuthConfig::default()).expect("open");
        assert_eq!(
            users.delete_user("guest").unwrap_err(),
            AuthError::FromConfig("guest".into())
        );
        assert_eq!(
            users.set_permission(all("nobody", "/")).unwrap_err(),
            AuthError::UnknownUser("nobody".into())
        );
        let mut bad = user("bad", "x");
        bad.password = None;
        assert!(users.put_user(bad).is_err(), "a user needs a secret");
        assert!(users.current().user("bad").is_none(), "nothing changed");
    }
}
