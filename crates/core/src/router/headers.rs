//! Headers routing: a binding's arguments against a message's headers,
//! with `x-match` = `all` (default), `any`, `all-with-x` or `any-with-x`.

use crate::message::{Headers, Value};

/// Whether a message with `headers` matches a binding with `args`.
/// `x-match` itself is never compared; other arguments whose names start
/// with `x-` are compared only in the `-with-x` modes. A `Null` argument
/// matches any value of that header.
pub(super) fn matches(args: &Headers, headers: &Headers) -> bool {
    let mode = args.get("x-match").and_then(Value::as_str).unwrap_or("all");
    let (any, with_x) = match mode {
        "any" => (true, false),
        "any-with-x" => (true, true),
        "all-with-x" => (false, true),
        _ => (false, false),
    };
    let mut compared = args
        .iter()
        .filter(|(name, _)| *name != "x-match" && (with_x || !name.starts_with("x-")))
        .map(|(name, want)| match (headers.get(name), want) {
            (None, _) => false,
            (Some(_), Value::Null) => true,
            (Some(have), want) => have == want,
        });
    if any {
        compared.any(|m| m)
    } else {
        compared.all(|m| m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(k, v)| (*k, *v)).collect()
    }

    #[test]
    fn all_and_any() {
        let msg = h(&[("format", "pdf"), ("type", "report")]);
        assert!(matches(&h(&[("format", "pdf"), ("type", "report")]), &msg));
        assert!(!matches(&h(&[("format", "pdf"), ("type", "log")]), &msg));
        assert!(matches(
            &h(&[("x-match", "any"), ("format", "pdf"), ("type", "log")]),
            &msg
        ));
        assert!(!matches(
            &h(&[("x-match", "any"), ("format", "zip"), ("type", "log")]),
            &msg
        ));
    }

    #[test]
    fn null_argument_matches_presence() {
        let mut args = Headers::new();
        args.insert("format", Value::Null);
        assert!(matches(&args, &h(&[("format", "anything")])));
        assert!(!matches(&args, &h(&[("other", "x")])));
    }

    #[test]
    fn no_arguments_match_everything_with_all() {
        assert!(matches(&h(&[("x-match", "all")]), &h(&[])));
    }
}
