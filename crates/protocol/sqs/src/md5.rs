//! The digests SQS returns and SDKs check: of the body, and of the message
//! (system) attributes in SQS's own canonical encoding.

use md5::{Digest, Md5};

pub fn hex(bytes: &[u8]) -> String {
    let digest = Md5::digest(bytes);
    let mut s = String::with_capacity(32);
    for b in digest.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// One attribute as SQS digests it.
pub struct Attr<'a> {
    pub name: &'a str,
    pub data_type: &'a str,
    /// String and Number values travel as text (transport 1), Binary as bytes (2).
    pub value: AttrValue<'a>,
}

pub enum AttrValue<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// MD5 over the attributes sorted by name, each as: name, data type (both
/// length-prefixed), a transport byte, then the length-prefixed value.
/// Lengths are 4-byte big-endian. `None` for no attributes.
pub fn attributes(mut attrs: Vec<Attr<'_>>) -> Option<String> {
    if attrs.is_empty() {
        return None;
    }
    attrs.sort_by(|a, b| a.name.cmp(b.name));
    let mut buf = Vec::new();
    let put = |buf: &mut Vec<u8>, bytes: &[u8]| {
        buf.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        buf.extend_from_slice(bytes);
    };
    for a in &attrs {
        put(&mut buf, a.name.as_bytes());
        put(&mut buf, a.data_type.as_bytes());
        match a.value {
            AttrValue::Text(s) => {
                buf.push(1);
                put(&mut buf, s.as_bytes());
            }
            AttrValue::Binary(b) => {
                buf.push(2);
                put(&mut buf, b);
            }
        }
    }
    Some(hex(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_digest() {
        assert_eq!(hex(b"hello"), "5d41402abc4b2a76b9719d911017c592");
    }

    #[test]
    fn attribute_digest_is_order_independent_and_type_sensitive() {
        let a = attributes(vec![
            Attr {
                name: "b",
                data_type: "Number",
                value: AttrValue::Text("1"),
            },
            Attr {
                name: "a",
                data_type: "String",
                value: AttrValue::Text("x"),
            },
        ]);
        let b = attributes(vec![
            Attr {
                name: "a",
                data_type: "String",
                value: AttrValue::Text("x"),
            },
            Attr {
                name: "b",
                data_type: "Number",
                value: AttrValue::Text("1"),
            },
        ]);
        assert_eq!(a, b);
        let c = attributes(vec![Attr {
            name: "a",
            data_type: "Binary",
            value: AttrValue::Binary(b"x"),
        }]);
        let d = attributes(vec![Attr {
            name: "a",
            data_type: "String",
            value: AttrValue::Text("x"),
        }]);
        assert_ne!(c, d);
        assert_eq!(attributes(Vec::new()), None);
    }
}
