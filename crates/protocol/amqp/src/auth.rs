//! SASL for connection.start-ok (PLAIN and AMQPLAIN) against the users
//! the broker knows.

use std::net::IpAddr;

use amq_protocol::types::{AMQPValue, FieldTable};

use crate::error::{Failure, ReplyCode};
use crate::values::as_text;

/// The mechanisms offered in connection.start, in order of preference.
pub const MECHANISMS: &str = "PLAIN AMQPLAIN";

/// A user who may connect.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    password: String,
    /// Only from 127.0.0.0/8 or ::1 (RabbitMQ's rule for `guest`).
    pub loopback_only: bool,
}

impl User {
    pub fn new(name: impl Into<String>, password: impl Into<String>) -> Self {
        User {
            name: name.into(),
            password: password.into(),
            loopback_only: false,
        }
    }

    pub fn loopback_only(mut self) -> Self {
        self.loopback_only = true;
        self
    }
}

/// The users AMQP clients log in as.
#[derive(Clone, Debug)]
pub struct Users {
    users: Vec<User>,
}

impl Default for Users {
    /// `guest`/`guest`, from loopback only.
    fn default() -> Self {
        Users {
            users: vec![User::new("guest", "guest").loopback_only()],
        }
    }
}

impl Users {
    pub fn new(users: Vec<User>) -> Self {
        Users { users }
    }

    /// Checks a start-ok response; returns the user's name.
    pub fn authenticate(
        &self,
        mechanism: &str,
        response: &[u8],
        peer: IpAddr,
    ) -> Result<String, Failure> {
        let refused = || {
            Failure::connection(
                ReplyCode::AccessRefused,
                format!(
                    "Login was refused using authentication mechanism {mechanism}. \
                     For details see the broker logfile."
                ),
            )
        };
        let (name, password) = match mechanism {
            "PLAIN" => parse_plain(response),
            "AMQPLAIN" => parse_amqplain(response),
            other => {
                return Err(Failure::connection(
                    ReplyCode::AccessRefused,
                    format!(
                        "unsupported authentication mechanism '{other}'; use one of {MECHANISMS}"
                    ),
                ));
            }
        }
        .ok_or_else(refused)?;
        let user = self
            .users
            .iter()
            .find(|u| {
                u.name == name && constant_time_eq(u.password.as_bytes(), password.as_bytes())
            })
            .ok_or_else(refused)?;
        if user.loopback_only && !peer.is_loopback() {
            tracing::warn!(user = %name, %peer, "user may only connect from loopback");
            return Err(Failure::connection(
                ReplyCode::AccessRefused,
                format!("user '{name}' can only connect via localhost"),
            ));
        }
        Ok(user.name.clone())
    }
}

/// PLAIN (RFC 4616): `authzid NUL authcid NUL password`.
fn parse_plain(response: &[u8]) -> Option<(String, String)> {
    let mut parts = response.split(|&b| b == 0);
    let _authzid = parts.next()?;
    let user = std::str::from_utf8(parts.next()?).ok()?;
    let password = std::str::from_utf8(parts.next()?).ok()?;
    parts
        .next()
        .is_none()
        .then(|| (user.to_owned(), password.to_owned()))
}

/// AMQPLAIN: a field table without its length prefix, with LOGIN and PASSWORD.
fn parse_amqplain(response: &[u8]) -> Option<(String, String)> {
    let mut framed = Vec::with_capacity(response.len() + 4);
    framed.extend_from_slice(&(response.len() as u32).to_be_bytes());
    framed.extend_from_slice(response);
    crate::depth::check_table(&framed, 0).ok()?;
    let (_, table): (_, FieldTable) =
        amq_protocol::types::parsing::parse_field_table(framed.as_slice()).ok()?;
    let get = |k: &str| table.inner().get(k).and_then(|v: &AMQPValue| as_text(v));
    Some((get("LOGIN")?, get("PASSWORD")?))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const REMOTE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn guest_logs_in_from_loopback_only() {
        let users = Users::default();
        assert_eq!(
            users
                .authenticate("PLAIN", b"\0guest\0guest", LOCAL)
                .unwrap(),
            "guest"
        );
        let f = users
            .authenticate("PLAIN", b"\0guest\0guest", REMOTE)
            .unwrap_err();
        assert_eq!(f.code, ReplyCode::AccessRefused);
    }

    #[test]
    fn wrong_passwords_malformed_responses_and_unknown_mechanisms_are_refused() {
        let users = Users::default();
        for (mech, resp) in [
            ("PLAIN", &b"\0guest\0nope"[..]),
            ("PLAIN", b"guest"),
            ("PLAIN", b"\0guest\0guest\0extra"),
            ("AMQPLAIN", b"\x05LOGIN"),
            ("EXTERNAL", b""),
        ] {
            let f = users.authenticate(mech, resp, LOCAL).unwrap_err();
            assert_eq!(f.code, ReplyCode::AccessRefused, "{mech} {resp:?}");
        }
    }

    #[test]
    fn amqplain_reads_login_and_password() {
        // LOGIN: S"guest", PASSWORD: S"guest", without the table's length.
        let mut r = Vec::new();
        for (k, v) in [("LOGIN", "guest"), ("PASSWORD", "guest")] {
            r.push(k.len() as u8);
            r.extend_from_slice(k.as_bytes());
            r.push(b'S');
            r.extend_from_slice(&(v.len() as u32).to_be_bytes());
            r.extend_from_slice(v.as_bytes());
        }
        assert_eq!(
            Users::default()
                .authenticate("AMQPLAIN", &r, LOCAL)
                .unwrap(),
            "guest"
        );
    }
}
