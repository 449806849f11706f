//! A stream's settings. Their names are Kafka's topic config keys, the
//! vocabulary stream users know; other faces map theirs onto them
//! (RabbitMQ's `x-max-age` is `retention.ms`).

/// Which time a record keeps.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's timestamp.
    CreateTime,
    /// The broker's clock when the batch was appended.
    LogAppendTime,
}

/// What happens to old segments. Only `delete` is built; the stored
/// format keeps keys and offsets, so compaction can come later.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    /// Segments whose newest record is older than this go (`None`: kept forever).
    pub retention_ms: Option<i64>,
    /// Per partition: the oldest segments go while the log is larger
    /// (`None`: no limit).
    pub retention_bytes: Option<u64>,
    /// A segment file rolls once it would pass this size.
    pub segment_bytes: u64,
    /// A segment rolls once its first record is this old, so age retention
    /// can delete it even when traffic is low.
    pub segment_ms: i64,
    /// The largest batch a producer may append.
    pub max_message_bytes: u32,
    pub timestamp_type: TimestampType,
    pub cleanup_policy: CleanupPolicy,
}

impl Default for StreamConfig {
    /// Kafka 4's topic defaults.
    fn default() -> Self {
        StreamConfig {
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            cleanup_policy: CleanupPolicy::Delete,
        }
    }
}

/// The smallest segment Kafka 4 accepts.
pub const MIN_SEGMENT_BYTES: u64 = 1 << 20;

/// The keys [`StreamConfig::set`] knows, in the order they are listed.
pub const KEYS: &[&str] = &[
    "cleanup.policy",
    "max.message.bytes",
    "message.timestamp.type",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
];

impl StreamConfig {
    /// Sets one key from its text form; the error says why it is refused.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let int = |v: &str| -> Result<i64, String> {
            v.trim()
                .parse::<i64>()
                .map_err(|_| format!("{key}: {v:?} is not a number"))
        };
        match key {
            "retention.ms" => {
                let v = int(value)?;
                self.retention_ms = match v {
                    -1 => None,
                    v if v >= 0 => Some(v),
                    _ => return Err(format!("{key} must be -1 or at least 0")),
                };
            }
            "retention.bytes" => {
                let v = int(value)?;
                self.retention_bytes = match v {
                    -1 => None,
                    v if v >= 0 => Some(v as u64),
                    _ => return Err(format!("{key} must be -1 or at least 0")),
                };
            }
            "segment.bytes" => {
                let v = int(value)?;
                if v < MIN_SEGMENT_BYTES as i64 || v > i64::from(i32::MAX) {
                    return Err(format!(
                        "{key} must be between {MIN_SEGMENT_BYTES} and {}",
                        i32::MAX
                    ));
                }
                self.segment_bytes = v as u64;
            }
            "segment.ms" => {
                let v = int(value)?;
                if v < 1 {
                    return Err(format!("{key} must be at least 1"));
                }
                self.segment_ms = v;
            }
            "max.message.bytes" => {
                let v = int(value)?;
                if !(0..=i64::from(i32::MAX)).contains(&v) {
                    return Err(format!("{key} must be between 0 and {}", i32::MAX));
                }
                self.max_message_bytes = v as u32;
            }
            "message.timestamp.type" => {
                self.timestamp_type = match value {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => return Err(format!("{key} must be CreateTime or LogAppendTime")),
                };
            }
            "cleanup.policy" => match value {
                "delete" => self.cleanup_policy = CleanupPolicy::Delete,
                "compact" | "compact,delete" | "delete,compact" => {
                    return Err("cleanup.policy=compact is not supported yet".into());
                }
                _ => return Err(format!("{key} must be delete")),
            },
            _ => return Err(format!("unknown config key {key}")),
        }
        Ok(())
    }

    /// A key's value in its text form.
    pub fn get(&self, key: &str) -> Option<String> {
        Some(match key {
            "retention.ms" => self.retention_ms.unwrap_or(-1).to_string(),
            "retention.bytes" => self
                .retention_bytes
                .map_or(-1, |b| b.min(i64::MAX as u64) as i64)
                .to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.type" => match self.timestamp_type {
                TimestampType::CreateTime => "CreateTime".into(),
                TimestampType::LogAppendTime => "LogAppendTime".into(),
            },
            "cleanup.policy" => "delete".into(),
            _ => return None,
        })
    }

    /// Every key with its value and whether it is the default.
    pub fn entries(&self) -> Vec<(&'static str, String, bool)> {
        let d = StreamConfig::default();
        KEYS.iter()
            .filter_map(|k| {
                let v = self.get(k)?;
                let is_default = d.get(k).as_deref() == Some(v.as_str());
                Some((*k, v, is_default))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_bad_values_are_refused() {
        let mut c = StreamConfig::default();
        for (k, v) in [
            ("retention.ms", "-1"),
            ("retention.bytes", "1048576"),
            ("segment.bytes", "2097152"),
            ("segment.ms", "60000"),
            ("max.message.bytes", "500"),
            ("message.timestamp.type", "LogAppendTime"),
            ("cleanup.policy", "delete"),
        ] {
            c.set(k, v).unwrap();
            assert_eq!(c.get(k).as_deref(), Some(v), "{k}");
        }
        assert_eq!(c.retention_ms, None);
        assert!(c.set("segment.bytes", "100").is_err());
        assert!(c.set("retention.ms", "-2").is_err());
        assert!(c.set("retention.ms", "soon").is_err());
        assert!(c.set("cleanup.policy", "compact").is_err());
        assert!(c.set("no.such.key", "1").is_err());
        assert_eq!(c.entries().len(), KEYS.len());
        assert!(StreamConfig::default().entries().iter().all(|(_, _, d)| *d));
    }
}
