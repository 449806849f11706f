//! SASL for connection.start-ok against the broker's user store (PLAIN
//! and AMQPLAIN; EXTERNAL on TLS connections whose client certificate was
//! verified: the certificate names the user, as RabbitMQ's
//! rabbitmq_auth_mechanism_ssl does), and the permission checks of each
//! method (RabbitMQ's configure / write / read rules).

use std::net::IpAddr;

use amq_protocol::types::{AMQPValue, FieldTable};

use ferry_auth::{Access, AuthError, User, UserStore};

use crate::error::{Failure, ReplyCode};
use crate::values::as_text;

/// The mechanisms offered in connection.start, in order of preference.
pub const MECHANISMS: &str = "PLAIN AMQPLAIN";
/// The same when the client presented a verified certificate and EXTERNAL
/// is on (last: a client that takes the first offered keeps its password).
pub const MECHANISMS_WITH_CERTIFICATE: &str = "PLAIN AMQPLAIN EXTERNAL";

/// Checks a start-ok response against the user store; returns the user.
/// `certified`: the user name a verified client certificate carries.
pub fn authenticate(
    users: &UserStore,
    mechanism: &str,
    response: &[u8],
    peer: IpAddr,
    certified: Option<&str>,
) -> Result<User, Failure> {
    let refused = || {
        Failure::connection(
            ReplyCode::AccessRefused,
            format!(
                "Login was refused using authentication mechanism {mechanism}. \
                 For details see the broker logfile."
            ),
        )
    };
    let offered = if certified.is_some() {
        MECHANISMS_WITH_CERTIFICATE
    } else {
        MECHANISMS
    };
    let checked = match (mechanism, certified) {
        ("EXTERNAL", Some(name)) => users
            .certified(name, peer)
            .map_err(|e| (name.to_owned(), e)),
        ("PLAIN" | "AMQPLAIN", _) => {
            let parsed = if mechanism == "PLAIN" {
                parse_plain(response)
            } else {
                parse_amqplain(response)
            };
            let (name, password) = parsed.ok_or_else(refused)?;
            users
                .authenticate(&name, &password, peer)
                .map_err(|e| (name, e))
        }
        (other, _) => {
            return Err(Failure::connection(
                ReplyCode::AccessRefused,
                format!("unsupported authentication mechanism '{other}'; use one of {offered}"),
            ));
        }
    };
    match checked {
        Ok(u) => Ok(u.clone()),
        Err((_, AuthError::LoopbackOnly(name))) => {
            tracing::warn!(user = %name, %peer, "user may only connect from loopback");
            Err(Failure::connection(
                ReplyCode::AccessRefused,
                format!("user '{name}' can only connect via localhost"),
            ))
        }
        Err((name, e)) => {
            tracing::info!(user = %name, %peer, error = %e, "login refused");
            Err(refused())
        }
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

/// Fails unless `user` may `access` the `kind` ("queue", "exchange") named
/// `name` in `vhost`; the default exchange is `amq.default`, as in RabbitMQ.
pub fn check(
    user: &User,
    vhost: &str,
    access: Access,
    kind: &str,
    name: &str,
) -> Result<(), Failure> {
    let resource = if kind == "exchange" && name.is_empty() {
        "amq.default"
    } else {
        name
    };
    if user.may(vhost, access, resource) {
        return Ok(());
    }
    let what = match access {
        Access::Configure => "configure",
        Access::Write => "write",
        Access::Read => "read",
    };
    Err(Failure::channel(
        ReplyCode::AccessRefused,
        format!(
            "{what} access to {kind} '{resource}' in vhost '{vhost}' refused for user '{}'",
            user.name
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const REMOTE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn guest_logs_in_from_loopback_only() {
        let users = UserStore::default();
        let u = authenticate(&users, "PLAIN", b"\0guest\0guest", LOCAL, None).unwrap();
        assert_eq!(u.name, "guest");
        let f = authenticate(&users, "PLAIN", b"\0guest\0guest", REMOTE, None).unwrap_err();
        assert_eq!(f.code, ReplyCode::AccessRefused);
    }

    #[test]
    fn wrong_passwords_malformed_responses_and_unknown_mechanisms_are_refused() {
        let users = UserStore::default();
        for (mech, resp) in [
            ("PLAIN", &b"\0guest\0nope"[..]),
            ("PLAIN", b"guest"),
            ("PLAIN", b"\0guest\0guest\0extra"),
            ("AMQPLAIN", b"\x05LOGIN"),
            ("EXTERNAL", b""),
        ] {
            let f = authenticate(&users, mech, resp, LOCAL, None).unwrap_err();
            assert_eq!(f.code, ReplyCode::AccessRefused, "{mech} {resp:?}");
        }
    }

    #[test]
    fn external_takes_the_certificates_user_without_a_password() {
        let users = UserStore::default();
        let u = authenticate(&users, "EXTERNAL", b"", LOCAL, Some("guest")).unwrap();
        assert_eq!(u.name, "guest");
        for (peer, name) in [(LOCAL, "nobody"), (REMOTE, "guest")] {
            let f = authenticate(&users, "EXTERNAL", b"", peer, Some(name)).unwrap_err();
            assert_eq!(f.code, ReplyCode::AccessRefused, "{name} from {peer}");
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
        let u = authenticate(&UserStore::default(), "AMQPLAIN", &r, LOCAL, None).unwrap();
        assert_eq!(u.name, "guest");
    }
}
