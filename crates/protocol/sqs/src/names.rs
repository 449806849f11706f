//! Queue names, URLs and ARNs.

use crate::error::SqsError;

pub const MAX_QUEUE_NAME: usize = 80;

/// Checks a queue name: 1 to 80 characters of letters, digits, `-` and
/// `_`, where a FIFO queue's name ends in `.fifo` (counted in the 80).
pub fn check_queue_name(name: &str) -> Result<(), SqsError> {
    let stem = name.strip_suffix(".fifo").unwrap_or(name);
    let ok = !stem.is_empty()
        && name.len() <= MAX_QUEUE_NAME
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(SqsError::invalid_parameter(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
        ))
    }
}

pub fn queue_url(host: &str, account: &str, name: &str) -> String {
    format!("http://{host}/{account}/{name}")
}

pub fn queue_arn(region: &str, account: &str, name: &str) -> String {
    format!("arn:aws:sqs:{region}:{account}:{name}")
}

/// The queue name in a queue URL (`http://host/<account>/<name>`), or in a
/// bare path the query protocol addressed (`/<account>/<name>`).
pub fn name_from_url(url: &str) -> Result<&str, SqsError> {
    let path = match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            rest.find('/').map_or("", |j| &rest[j..])
        }
        None => url,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut parts = path.trim_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_account), Some(name), None) if !name.is_empty() => Ok(name),
        (Some(name), None, None) if !name.is_empty() => Ok(name),
        _ => Err(SqsError::no_queue()),
    }
}

/// The queue name in an ARN (`arn:aws:sqs:<region>:<account>:<name>`).
pub fn name_from_arn(arn: &str) -> Result<&str, SqsError> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "sqs", _, _, name] if !name.is_empty() => Ok(name),
        _ => Err(SqsError::invalid_parameter(&format!(
            "{arn} is not a valid SQS queue ARN."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_queue_name("orders-1_a").is_ok());
        assert!(check_queue_name("orders.fifo").is_ok());
        assert!(check_queue_name(".fifo").is_err());
        assert!(check_queue_name("a b").is_err());
        assert!(check_queue_name(&"x".repeat(81)).is_err());
        assert!(check_queue_name(&format!("{}.fifo", "x".repeat(75))).is_ok());
        assert!(check_queue_name(&format!("{}.fifo", "x".repeat(76))).is_err());
    }

    #[test]
    fn urls_and_arns() {
        let url = queue_url("127.0.0.1:9324", "000000000000", "q");
        assert_eq!(url, "http://127.0.0.1:9324/000000000000/q");
        assert_eq!(name_from_url(&url).ok(), Some("q"));
        assert_eq!(name_from_url("/000000000000/q").ok(), Some("q"));
        assert!(name_from_url("http://h/").is_err());
        assert!(name_from_url("http://h/a/b/c").is_err());
        let arn = queue_arn("us-east-1", "000000000000", "dlq");
        assert_eq!(name_from_arn(&arn).ok(), Some("dlq"));
        assert!(name_from_arn("arn:aws:sns:r:a:t").is_err());
    }
}
