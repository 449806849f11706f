//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), the server side:
//! the client proves it knows the password without sending it, and the
//! server proves it knows it too.
//!
//! A user's SCRAM credentials derive from the password: users with a plain
//! password in the config get fresh ones (a random salt) for every
//! exchange. An argon2 hash cannot give them, so users stored only as a
//! hash cannot use SCRAM (PLAIN works for them).

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};

use crate::{AuthError, Secret, User, UserStore, constant_time_eq};

/// Iterations of the password hash; Kafka's minimum, and RFC 7677's.
pub const ITERATIONS: u32 = 4096;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Sha256,
    Sha512,
}

impl Mechanism {
    /// The mechanism a SASL name selects.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        match name {
            "SCRAM-SHA-256" => Some(Mechanism::Sha256),
            "SCRAM-SHA-512" => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length: `new_from_slice` cannot fail.
        match self {
            Mechanism::Sha256 => <Hmac<Sha256> as KeyInit>::new_from_slice(key)
                .map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                .unwrap_or_default(),
            Mechanism::Sha512 => <Hmac<Sha512> as KeyInit>::new_from_slice(key)
                .map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                .unwrap_or_default(),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// RFC 5802's Hi(): PBKDF2 with HMAC of this hash.
    fn salted_password(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
                out.to_vec()
            }
            Mechanism::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// What the server keeps of a password for SCRAM.
struct Credentials {
    salt: Vec<u8>,
    iterations: u32,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl Credentials {
    fn derive(mech: Mechanism, password: &str, salt: Vec<u8>, iterations: u32) -> Credentials {
        let salted = mech.salted_password(password, &salt, iterations);
        let client_key = mech.hmac(&salted, b"Client Key");
        Credentials {
            stored_key: mech.hash(&client_key),
            server_key: mech.hmac(&salted, b"Server Key"),
            salt,
            iterations,
        }
    }
}

fn random(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    // Without the OS's randomness nothing here is safe: refuse instead.
    if getrandom::fill(&mut b).is_err() {
        b.clear();
    }
    b
}

/// Why an exchange failed: a malformed message (the client's bug) or
/// credentials that do not check out (told apart only in logs).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("SCRAM authentication failed")]
    Refused,
    #[error("user '{0}' has only a password hash, which SCRAM cannot use (PLAIN can)")]
    NoCredentials(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// An exchange after the server's first message, awaiting the client's
/// final one.
/// Whom an exchange is for.
enum Lookup {
    Found(User),
    /// Stored only as an argon2 hash: SCRAM cannot check it.
    HashOnly(String),
    Unknown,
}

pub struct Exchange {
    mech: Mechanism,
    user: Lookup,
    peer: IpAddr,
    credentials: Credentials,
    gs2_header: String,
    nonce: String,
    /// client-first-message-bare "," server-first-message
    auth_prefix: String,
}

/// Reads `k=value` from a SCRAM attribute.
fn attr(part: Option<&str>, key: char) -> Result<&str, ScramError> {
    part.and_then(|p| p.strip_prefix(key))
        .and_then(|p| p.strip_prefix('='))
        .ok_or(ScramError::Malformed(
            "an attribute is missing or out of order",
        ))
}

/// A SCRAM user name, with RFC 5802's `=2C` and `=3D` escapes undone.
fn unescape(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3);
        match esc {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("a bad escape in the user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

impl UserStore {
    /// Starts an exchange from the client's first message; returns the
    /// server's first message and the exchange to finish. An unknown user
    /// gets made-up credentials, so the answer does not tell which users
    /// exist; the exchange then fails at the proof.
    pub fn scram_start(
        &self,
        mech: Mechanism,
        client_first: &[u8],
        peer: IpAddr,
    ) -> Result<(Vec<u8>, Exchange), ScramError> {
        let msg =
            std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // gs2-header: "n" or "y" (no channel binding), an optional authzid.
        let (cbind, rest) = msg
            .split_once(',')
            .ok_or(ScramError::Malformed("no gs2 header"))?;
        if cbind != "n" && cbind != "y" {
            return Err(ScramError::Malformed("channel binding is not supported"));
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no gs2 header"))?;
        let gs2_header = format!("{cbind},{authzid},");
        let mut parts = bare.split(',');
        if parts.clone().next().is_some_and(|p| p.starts_with("m=")) {
            return Err(ScramError::Malformed(
                "mandatory extensions are not supported",
            ));
        }
        let name = unescape(attr(parts.next(), 'n')?)?;
        let client_nonce = attr(parts.next(), 'r')?;
        if client_nonce.is_empty()
            || !client_nonce
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
        {
            return Err(ScramError::Malformed("a bad nonce"));
        }
        // The authzid is empty or "a=" the user itself (no acting as
        // another user).
        if !authzid.is_empty() {
            let a = authzid
                .strip_prefix("a=")
                .ok_or(ScramError::Malformed("a bad authzid in the gs2 header"))?;
            if unescape(a)? != name {
                return Err(ScramError::Refused);
            }
        }
        let salt = random(24);
        let server_nonce = B64.encode(random(24));
        if salt.is_empty() || server_nonce.is_empty() {
            return Err(ScramError::Refused);
        }
        let known = self.users.iter().find(|u| u.name == name);
        // Unknown users, and users with only a hash, get the same work
        // with a password nobody has: which users exist, and how they are
        // stored, must not show before the proof fails.
        let (user, credentials) = match known.map(|u| (u, &u.secret)) {
            Some((u, Secret::Plain(p))) => (
                Lookup::Found(u.clone()),
                Credentials::derive(mech, p, salt, ITERATIONS),
            ),
            Some((_, Secret::Hash(_))) => (
                Lookup::HashOnly(name),
                Credentials::derive(mech, &B64.encode(random(24)), salt, ITERATIONS),
            ),
            None => (
                Lookup::Unknown,
                Credentials::derive(mech, &B64.encode(random(24)), salt, ITERATIONS),
            ),
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credentials.salt),
            credentials.iterations
        );
        let auth_prefix = format!("{bare},{server_first}");
        Ok((
            server_first.into_bytes(),
            Exchange {
                mech,
                user,
                peer,
                credentials,
                gs2_header,
                nonce,
                auth_prefix,
            },
        ))
    }
}

impl Exchange {
    pub fn mechanism(&self) -> Mechanism {
        self.mech
    }

    /// Checks the client's final message; returns the user and the
    /// server's final message (its own proof).
    pub fn finish(self, client_final: &[u8]) -> Result<(User, Vec<u8>), ScramError> {
        // Why a proof that does not check out failed (for the log; the
        // client is told only that it did).
        let refused = || match &self.user {
            Lookup::HashOnly(name) => ScramError::NoCredentials(name.clone()),
            _ => ScramError::Refused,
        };
        let msg =
            std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut parts = without_proof.split(',');
        let binding = B64
            .decode(attr(parts.next(), 'c')?)
            .map_err(|_| ScramError::Malformed("channel binding is not base64"))?;
        if binding != self.gs2_header.as_bytes() {
            return Err(ScramError::Malformed(
                "channel binding differs from the gs2 header",
            ));
        }
        if attr(parts.next(), 'r')? != self.nonce {
            return Err(ScramError::Refused);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("the proof is not base64"))?;
        let auth_message = format!("{},{without_proof}", self.auth_prefix);
        let mech = self.mech;
        let signature = mech.hmac(&self.credentials.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(refused());
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        if !constant_time_eq(&mech.hash(&client_key), &self.credentials.stored_key) {
            return Err(refused());
        }
        let user = match self.user {
            Lookup::Found(u) => u,
            Lookup::HashOnly(name) => return Err(ScramError::NoCredentials(name)),
            Lookup::Unknown => return Err(ScramError::Refused),
        };
        if user.loopback_only && !self.peer.is_loopback() {
            return Err(AuthError::LoopbackOnly(user.name.clone()).into());
        }
        let server_signature = mech.hmac(&self.credentials.server_key, auth_message.as_bytes());
        let server_final = format!("v={}", B64.encode(server_signature));
        Ok((user, server_final.into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// The client's side, as RFC 5802 gives it.
    fn client_final(
        mech: Mechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> (String, Vec<u8>) {
        let mut attrs = server_first.split(',');
        let nonce = attrs.next().unwrap().strip_prefix("r=").unwrap();
        let salt = B64
            .decode(attrs.next().unwrap().strip_prefix("s=").unwrap())
            .unwrap();
        let iters: u32 = attrs
            .next()
            .unwrap()
            .strip_prefix("i=")
            .unwrap()
            .parse()
            .unwrap();
        let salted = mech.salted_password(password, &salt, iters);
        let client_key = mech.hmac(&salted, b"Client Key");
        let stored = mech.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let sig = mech.hmac(&stored, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let server_key = mech.hmac(&salted, b"Server Key");
        let expect = mech.hmac(&server_key, auth.as_bytes());
        (format!("{without_proof},p={}", B64.encode(proof)), expect)
    }

    #[test]
    fn both_mechanisms_prove_both_ways_and_wrong_passwords_fail() {
        let store = UserStore::default(); // guest/guest
        for mech in [Mechanism::Sha256, Mechanism::Sha512] {
            let bare = "n=guest,r=fyko+d2lbbFgONRv9qkxdawL";
            let (first, ex) = store
                .scram_start(mech, format!("n,,{bare}").as_bytes(), LOCAL)
                .unwrap();
            let first = String::from_utf8(first).unwrap();
            assert!(first.starts_with("r=fyko+d2lbbFgONRv9qkxdawL"));
            let (fin, expect) = client_final(mech, "guest", bare, &first);
            let (user, server_final) = ex.finish(fin.as_bytes()).unwrap();
            assert_eq!(user.name, "guest");
            assert_eq!(
                server_final,
                format!("v={}", B64.encode(expect)).into_bytes()
            );

            let (first, ex) = store
                .scram_start(mech, format!("n,,{bare}").as_bytes(), LOCAL)
                .unwrap();
            let (fin, _) = client_final(mech, "wrong", bare, &String::from_utf8(first).unwrap());
            assert_eq!(ex.finish(fin.as_bytes()).err(), Some(ScramError::Refused));

            // An unknown user gets a plausible first message, then fails.
            let bare = "n=nobody,r=abc";
            let (first, ex) = store
                .scram_start(mech, format!("n,,{bare}").as_bytes(), LOCAL)
                .unwrap();
            let (fin, _) = client_final(mech, "guest", bare, &String::from_utf8(first).unwrap());
            assert_eq!(ex.finish(fin.as_bytes()).err(), Some(ScramError::Refused));
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        let store = UserStore::default();
        let m = Mechanism::Sha256;
        for bad in [
            "",
            "n",
            "n,junk,n=guest,r=x",
            "p=tls-unique,,n=guest,r=x",
            "n,,r=x,n=guest",
            "n,,n=gu=est,r=x",
            "n,,n=guest,r=",
            "n,,m=ext,n=guest,r=x",
        ] {
            assert!(
                matches!(
                    store.scram_start(m, bad.as_bytes(), LOCAL),
                    Err(ScramError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        let (_, ex) = store.scram_start(m, b"n,,n=guest,r=x", LOCAL).unwrap();
        assert!(matches!(
            ex.finish(b"c=biws,r=x"),
            Err(ScramError::Malformed(_))
        ));
        assert_eq!(unescape("a=2Cb=3Dc").unwrap(), "a,b=c");
    }

    #[test]
    fn a_user_stored_as_a_hash_fails_only_at_the_proof() {
        let mut users = UserStore::default().users;
        users[0].secret = Secret::Hash(crate::hash_password("guest").unwrap());
        let store = UserStore::new(users);
        let m = Mechanism::Sha256;
        let bare = "n=guest,r=abc";
        let (first, ex) = store
            .scram_start(m, format!("n,,{bare}").as_bytes(), LOCAL)
            .expect("a first message like any other");
        let (fin, _) = client_final(m, "guest", bare, &String::from_utf8(first).unwrap());
        assert_eq!(
            ex.finish(fin.as_bytes()).err(),
            Some(ScramError::NoCredentials("guest".into()))
        );
    }
}
