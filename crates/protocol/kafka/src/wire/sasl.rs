//! The SASL requests (SaslHandshake, SaslAuthenticate) and their decoders.

use bytes::Bytes;

use super::{DecodeError, Reader};

type R<T> = Result<T, DecodeError>;

/// SaslHandshake: the mechanism the client wants.
pub fn sasl_handshake(r: &mut Reader, _v: i16) -> R<String> {
    r.string()
}

/// SaslAuthenticate: the mechanism's next token from the client.
pub fn sasl_authenticate(r: &mut Reader, _v: i16) -> R<Bytes> {
    let token = r
        .nullable_bytes()?
        .ok_or_else(|| DecodeError::Malformed("null SASL token".into()))?;
    r.tagged()?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    use kafka_protocol::messages::{self as km, ApiKey};

    use crate::wire::flexible;
    use crate::wire::testing::{TAG, check, s};

    #[test]
    fn every_version() {
        for v in 0..=1 {
            let m = km::SaslHandshakeRequest::default().with_mechanism(s("SCRAM-SHA-256"));
            assert_eq!(
                check(ApiKey::SaslHandshake, v, &m, sasl_handshake),
                "SCRAM-SHA-256"
            );
        }
        for v in 0..=2 {
            let mut m = km::SaslAuthenticateRequest::default()
                .with_auth_bytes(Bytes::from_static(b"\0guest\0guest"));
            if flexible(ApiKey::SaslAuthenticate, v) {
                m = m.with_unknown_tagged_field(TAG.0, TAG.1);
            }
            assert_eq!(
                check(ApiKey::SaslAuthenticate, v, &m, sasl_authenticate),
                Bytes::from_static(b"\0guest\0guest")
            );
        }
    }
}
