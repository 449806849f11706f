//! Verifying AWS Signature Version 4, in the `Authorization` header or in
//! the query string (presigned), against the configured credentials.
//!
//! The verifier rebuilds the canonical request from what arrived, derives
//! the signing key from the secret for the credential's date, region and
//! service, and compares signatures in constant time.

use std::collections::HashMap;

use axum::http::{HeaderMap, Method};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::error::SqsError;

type HmacSha256 = Hmac<Sha256>;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a request's date may be from ours.
const MAX_SKEW_SECS: i64 = 15 * 60;

/// Access key id -> secret.
#[derive(Clone, Debug, Default)]
pub struct Credentials(pub HashMap<String, String>);

impl Credentials {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The parts of a signature, from the header or the query string.
struct Signed<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: String,
    amz_date: String,
    presigned: bool,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn invalid(msg: &str) -> SqsError {
    SqsError::signature_does_not_match(msg)
}

fn parse_header(value: &str) -> Option<Signed<'_>> {
    let rest = value.strip_prefix(ALGORITHM)?.trim();
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed_headers = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let mut scope = credential?.split('/');
    let (access_key, date, region, service, term) = (
        scope.next()?,
        scope.next()?,
        scope.next()?,
        scope.next()?,
        scope.next()?,
    );
    if term != "aws4_request" {
        return None;
    }
    Some(Signed {
        access_key,
        date,
        region,
        service,
        signed_headers: signed_headers?.split(';').collect(),
        signature: signature?.to_ascii_lowercase(),
        amz_date: String::new(),
        presigned: false,
    })
}

/// Verifies the request's signature; returns the access key id it was
/// signed with. `secret_of` gives a key's secret (None: unknown key),
/// `query` is the raw query string, `now_secs` the current Unix time.
pub fn verify(
    secret_of: &dyn Fn(&str) -> Option<String>,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> Result<String, SqsError> {
    let header = headers.get("authorization").and_then(|v| v.to_str().ok());
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let q = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (signed, credential_holder);
    if let Some(h) = header {
        signed = parse_header(h).ok_or_else(|| {
            SqsError::incomplete_signature(
                "The Authorization header is not a valid AWS4-HMAC-SHA256 signature.",
            )
        })?;
    } else if q("X-Amz-Algorithm") == Some(ALGORITHM) {
        credential_holder = q("X-Amz-Credential").unwrap_or_default().to_owned();
        let mut scope = credential_holder.split('/');
        let parts = (
            scope.next(),
            scope.next(),
            scope.next(),
            scope.next(),
            scope.next(),
        );
        let (Some(access_key), Some(date), Some(region), Some(service), Some("aws4_request")) =
            parts
        else {
            return Err(SqsError::incomplete_signature(
                "X-Amz-Credential is malformed.",
            ));
        };
        // A presigned request is good for its X-Amz-Expires (at most a week).
        let expires: i64 = q("X-Amz-Expires")
            .and_then(|e| e.parse().ok())
            .unwrap_or(MAX_SKEW_SECS);
        let signed_at = parse_amz_date(q("X-Amz-Date").unwrap_or_default());
        if signed_at.is_some_and(|t| now_secs > t + expires.min(7 * 24 * 3600)) {
            return Err(invalid("Request has expired (X-Amz-Expires)."));
        }
        signed = Signed {
            access_key,
            date,
            region,
            service,
            signed_headers: q("X-Amz-SignedHeaders")
                .unwrap_or("host")
                .split(';')
                .collect(),
            signature: q("X-Amz-Signature")
                .unwrap_or_default()
                .to_ascii_lowercase(),
            amz_date: q("X-Amz-Date").unwrap_or_default().to_owned(),
            presigned: true,
        };
        return check(
            secret_of, signed, method, path, &pairs, headers, body, now_secs,
        );
    } else {
        return Err(SqsError::missing_authentication_token(
            "Request is missing Authentication Token",
        ));
    }
    let mut signed = signed;
    signed.amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    check(
        secret_of, signed, method, path, &pairs, headers, body, now_secs,
    )
}

#[allow(clippy::too_many_arguments)]
fn check(
    secret_of: &dyn Fn(&str) -> Option<String>,
    signed: Signed<'_>,
    method: &Method,
    path: &str,
    pairs: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> Result<String, SqsError> {
    let secret = secret_of(signed.access_key).ok_or_else(|| {
        SqsError::invalid_client_token_id("The security token included in the request is invalid.")
    })?;
    if !signed.amz_date.starts_with(signed.date) {
        return Err(invalid(
            "The credential date does not match the request date.",
        ));
    }
    let when = parse_amz_date(&signed.amz_date)
        .ok_or_else(|| SqsError::incomplete_signature("X-Amz-Date is missing or malformed."))?;
    if (when - now_secs).abs() > MAX_SKEW_SECS {
        return Err(invalid(&format!(
            "Signature expired: {} is now earlier or later than the allowed 15 minutes.",
            signed.amz_date
        )));
    }
    if !signed.signed_headers.contains(&"host") {
        return Err(invalid("The host header must be signed."));
    }
    // Canonical request.
    let canonical_uri = uri_encode(if path.is_empty() { "/" } else { path }, true);
    let mut query: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| !(signed.presigned && k == "X-Amz-Signature"))
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut canonical_headers = String::new();
    for name in &signed.signed_headers {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    // The body is always covered: a client's own hash header must agree.
    let payload_hash = sha256_hex(body);
    if let Some(claimed) = headers.get("x-amz-content-sha256")
        && claimed.as_bytes() != payload_hash.as_bytes()
    {
        return Err(invalid(
            "The x-amz-content-sha256 header does not match the request body.",
        ));
    }
    let canonical = format!(
        "{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{}\n{payload_hash}",
        signed.signed_headers.join(";")
    );
    let scope = format!(
        "{}/{}/{}/aws4_request",
        signed.date, signed.region, signed.service
    );
    let to_sign = format!(
        "{ALGORITHM}\n{}\n{scope}\n{}",
        signed.amz_date,
        sha256_hex(canonical.as_bytes())
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), signed.date.as_bytes());
    let k_region = hmac(&k_date, signed.region.as_bytes());
    let k_service = hmac(&k_region, signed.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let expected = hex(&hmac(&k_signing, to_sign.as_bytes()));
    if constant_time_eq(expected.as_bytes(), signed.signature.as_bytes()) {
        Ok(signed.access_key.to_owned())
    } else {
        Err(invalid(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `YYYYMMDDTHHMMSSZ` to Unix seconds.
fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn dates() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date("2015-08-30"), None);
    }

    fn lookup(creds: &Credentials) -> impl Fn(&str) -> Option<String> + '_ {
        |id| creds.0.get(id).cloned()
    }

    /// The example in AWS's SigV4 documentation (IAM ListUsers).
    #[test]
    fn the_documented_example_verifies() {
        let mut creds = Credentials::default();
        creds.0.insert(
            "AKIDEXAMPLE".into(),
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        headers.insert("host", HeaderValue::from_static("iam.amazonaws.com"));
        headers.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        headers.insert("authorization", HeaderValue::from_static(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
        ));
        let now = 1_440_938_160;
        let q = Some("Action=ListUsers&Version=2010-05-08");
        assert_eq!(
            verify(&lookup(&creds), &Method::GET, "/", q, &headers, b"", now),
            Ok("AKIDEXAMPLE".to_owned())
        );
        // Tampering with anything signed breaks it.
        let tampered = Some("Action=ListUsers&Version=2010-05-09");
        assert!(
            verify(
                &lookup(&creds),
                &Method::GET,
                "/",
                tampered,
                &headers,
                b"",
                now
            )
            .is_err()
        );
        assert!(verify(&lookup(&creds), &Method::POST, "/", q, &headers, b"", now).is_err());
        // Too old.
        assert!(
            verify(
                &lookup(&creds),
                &Method::GET,
                "/",
                q,
                &headers,
                b"",
                now + 3600
            )
            .is_err()
        );
        // Unknown key.
        let other = Credentials::default();
        assert_eq!(
            verify(&lookup(&other), &Method::GET, "/", q, &headers, b"", now)
                .err()
                .map(|e| e.query_code),
            Some("InvalidClientTokenId")
        );
        // A body swapped under a claimed hash is refused.
        let mut swapped = headers.clone();
        swapped.insert(
            "x-amz-content-sha256",
            HeaderValue::from_static(
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
        );
        assert!(
            verify(
                &lookup(&creds),
                &Method::GET,
                "/",
                q,
                &swapped,
                b"Action=DeleteQueue",
                now
            )
            .is_err()
        );
        // No signature at all.
        let bare = HeaderMap::new();
        assert!(verify(&lookup(&creds), &Method::GET, "/", q, &bare, b"", now).is_err());
    }
}
