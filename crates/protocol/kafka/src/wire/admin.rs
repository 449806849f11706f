//! The admin requests on topics and the cluster (CreatePartitions,
//! DeleteRecords, the configs APIs, DescribeCluster), with only what the broker reads from
//! them, and their decoders (field layouts as Kafka's message specs give
//! them).

use super::{DecodeError, Reader};

type R<T> = Result<T, DecodeError>;

/// Kafka's resource type of a topic (the configs APIs also name brokers,
/// 4, and broker loggers, 8).
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionsIncrease {
    pub name: String,
    /// The total partitions the topic should have.
    pub count: i32,
    /// Manual replica assignments given (refused on a single node).
    pub assignments: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatePartitionsRequest {
    pub topics: Vec<PartitionsIncrease>,
    pub validate_only: bool,
}

pub fn create_partitions(r: &mut Reader, _v: i16) -> R<CreatePartitionsRequest> {
    let topics = r.array(|r| {
        let name = r.string()?;
        let count = r.i32()?;
        let assignments = r.nullable_array(|r| {
            r.array(|r| r.i32())?;
            r.tagged()
        })?;
        r.tagged()?;
        Ok(PartitionsIncrease {
            name,
            count,
            assignments: assignments.is_some(),
        })
    })?;
    r.i32()?; // timeout
    let validate_only = r.bool()?;
    r.tagged()?;
    Ok(CreatePartitionsRequest {
        topics,
        validate_only,
    })
}

/// One topic of a DeleteRecords: each partition, and the offset before
/// which its records go (-1: the high watermark).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordsDeletion {
    pub name: String,
    pub partitions: Vec<(i32, i64)>,
}

pub fn delete_records(r: &mut Reader, _v: i16) -> R<Vec<RecordsDeletion>> {
    let topics = r.array(|r| {
        let name = r.string()?;
        let partitions = r.array(|r| {
            let index = r.i32()?;
            let offset = r.i64()?;
            r.tagged()?;
            Ok((index, offset))
        })?;
        r.tagged()?;
        Ok(RecordsDeletion { name, partitions })
    })?;
    r.i32()?; // timeout: the deletion is done before the answer anyway
    r.tagged()?;
    Ok(topics)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribeConfigsResource {
    pub resource_type: i8,
    pub name: String,
    /// `None`: every key.
    pub keys: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribeConfigsRequest {
    pub resources: Vec<DescribeConfigsResource>,
    pub include_synonyms: bool,
    pub include_documentation: bool,
}

pub fn describe_configs(r: &mut Reader, v: i16) -> R<DescribeConfigsRequest> {
    let resources = r.array(|r| {
        let resource_type = r.i8()?;
        let name = r.string()?;
        let keys = r.nullable_array(|r| r.string())?;
        r.tagged()?;
        Ok(DescribeConfigsResource {
            resource_type,
            name,
            keys,
        })
    })?;
    let include_synonyms = if v >= 1 { r.bool()? } else { false };
    let include_documentation = if v >= 3 { r.bool()? } else { false };
    r.tagged()?;
    Ok(DescribeConfigsRequest {
        resources,
        include_synonyms,
        include_documentation,
    })
}

/// IncrementalAlterConfigs' operations (AlterConfigs sets only).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ConfigOp {
    Set,
    /// Back to the default.
    Delete,
    /// To a list value (only `cleanup.policy` is one here).
    Append,
    Subtract,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigChange {
    pub name: String,
    pub op: ConfigOp,
    pub value: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterConfigsResource {
    pub resource_type: i8,
    pub name: String,
    pub changes: Vec<ConfigChange>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterConfigsRequest {
    pub resources: Vec<AlterConfigsResource>,
    pub validate_only: bool,
}

/// AlterConfigs (`incremental` false: every change is a set, and the
/// resource's other keys go back to their defaults) or
/// IncrementalAlterConfigs (each change has its operation).
pub fn alter_configs(r: &mut Reader, _v: i16, incremental: bool) -> R<AlterConfigsRequest> {
    let resources = r.array(|r| {
        let resource_type = r.i8()?;
        let name = r.string()?;
        let changes = r.array(|r| {
            let name = r.string()?;
            let op = if incremental {
                match r.i8()? {
                    0 => ConfigOp::Set,
                    1 => ConfigOp::Delete,
                    2 => ConfigOp::Append,
                    3 => ConfigOp::Subtract,
                    n => {
                        return Err(DecodeError::Malformed(format!("config operation {n}")));
                    }
                }
            } else {
                ConfigOp::Set
            };
            let value = r.nullable_string()?;
            r.tagged()?;
            Ok(ConfigChange { name, op, value })
        })?;
        r.tagged()?;
        Ok(AlterConfigsResource {
            resource_type,
            name,
            changes,
        })
    })?;
    let validate_only = r.bool()?;
    r.tagged()?;
    Ok(AlterConfigsRequest {
        resources,
        validate_only,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribeClusterRequest {
    pub include_authorized_operations: bool,
    /// 1: brokers, 2: controllers (KIP-919).
    pub endpoint_type: i8,
}

pub fn describe_cluster(r: &mut Reader, v: i16) -> R<DescribeClusterRequest> {
    let include_authorized_operations = r.bool()?;
    let endpoint_type = if v >= 1 { r.i8()? } else { 1 };
    if v >= 2 {
        r.bool()?; // include fenced brokers: none are
    }
    r.tagged()?;
    Ok(DescribeClusterRequest {
        include_authorized_operations,
        endpoint_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use kafka_protocol::messages::{self as km, ApiKey};

    use crate::wire::flexible;
    use crate::wire::testing::{TAG, check, s, strings, t};

    #[test]
    fn create_partitions_every_version() {
        for v in 0..=3 {
            let flex = flexible(ApiKey::CreatePartitions, v);
            let topic = |name, count, assigned: bool| {
                let mut x = km::create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(t(name))
                    .with_count(count)
                    .with_assignments(assigned.then(|| {
                        vec![
                            km::create_partitions_request::CreatePartitionsAssignment::default()
                                .with_broker_ids(vec![km::BrokerId(0)]),
                        ]
                    }));
                if flex {
                    x = x.with_unknown_tagged_field(TAG.0, TAG.1);
                }
                x
            };
            let mut m = km::CreatePartitionsRequest::default()
                .with_topics(vec![topic("a", 3, false), topic("b", 5, true)])
                .with_timeout_ms(1000)
                .with_validate_only(true);
            if flex {
                m = m.with_unknown_tagged_field(TAG.0, TAG.1);
            }
            let d = check(ApiKey::CreatePartitions, v, &m, create_partitions);
            assert_eq!(
                d,
                CreatePartitionsRequest {
                    topics: vec![
                        PartitionsIncrease {
                            name: "a".into(),
                            count: 3,
                            assignments: false
                        },
                        PartitionsIncrease {
                            name: "b".into(),
                            count: 5,
                            assignments: true
                        },
                    ],
                    validate_only: true,
                },
                "v{v}"
            );
        }
    }

    #[test]
    fn delete_records_every_version() {
        for v in 0..=2 {
            let flex = flexible(ApiKey::DeleteRecords, v);
            let part = |i, o| {
                let mut x = km::delete_records_request::DeleteRecordsPartition::default()
                    .with_partition_index(i)
                    .with_offset(o);
                if flex {
                    x = x.with_unknown_tagged_field(TAG.0, TAG.1);
                }
                x
            };
            let mut topic = km::delete_records_request::DeleteRecordsTopic::default()
                .with_name(t("orders"))
                .with_partitions(vec![part(0, 10), part(3, -1)]);
            if flex {
                topic = topic.with_unknown_tagged_field(TAG.0, TAG.1);
            }
            let mut m = km::DeleteRecordsRequest::default()
                .with_topics(vec![topic])
                .with_timeout_ms(500);
            if flex {
                m = m.with_unknown_tagged_field(TAG.0, TAG.1);
            }
            let d = check(ApiKey::DeleteRecords, v, &m, delete_records);
            assert_eq!(
                d,
                vec![RecordsDeletion {
                    name: "orders".into(),
                    partitions: vec![(0, 10), (3, -1)],
                }],
                "v{v}"
            );
        }
    }

    #[test]
    fn describe_configs_every_version() {
        for v in 1..=4 {
            let flex = flexible(ApiKey::DescribeConfigs, v);
            let res = |kind, name, keys: Option<Vec<&'static str>>| {
                let mut x = km::describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(kind)
                    .with_resource_name(s(name))
                    .with_configuration_keys(keys.map(|k| k.into_iter().map(s).collect()));
                if flex {
                    x = x.with_unknown_tagged_field(TAG.0, TAG.1);
                }
                x
            };
            let mut m = km::DescribeConfigsRequest::default()
                .with_resources(vec![
                    res(2, "orders", Some(vec!["retention.ms"])),
                    res(4, "0", None),
                ])
                .with_include_synonyms(true);
            if v >= 3 {
                m = m.with_include_documentation(true);
            }
            if flex {
                m = m.with_unknown_tagged_field(TAG.0, TAG.1);
            }
            let d = check(ApiKey::DescribeConfigs, v, &m, describe_configs);
            assert_eq!(
                d,
                DescribeConfigsRequest {
                    resources: vec![
                        DescribeConfigsResource {
                            resource_type: 2,
                            name: "orders".into(),
                            keys: Some(strings(&["retention.ms"])),
                        },
                        DescribeConfigsResource {
                            resource_type: 4,
                            name: "0".into(),
                            keys: None,
                        },
                    ],
                    include_synonyms: true,
                    include_documentation: v >= 3,
                },
                "v{v}"
            );
        }
    }

    #[test]
    fn alter_configs_every_version() {
        for v in 0..=2 {
            let flex = flexible(ApiKey::AlterConfigs, v);
            let cfg = |name, value: Option<&'static str>| {
                let mut x = km::alter_configs_request::AlterableConfig::default()
                    .with_name(s(name))
                    .with_value(value.map(s));
                if flex {
                    x = x.with_unknown_tagged_field(TAG.0, TAG.1);
                }
                x
            };
            let mut res = km::alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("orders"))
                .with_configs(vec![cfg("retention.ms", Some("1")), cfg("x", None)]);
            if flex {
                res = res.with_unknown_tagged_field(TAG.0, TAG.1);
            }
            let mut m = km::AlterConfigsRequest::default().with_resources(vec![res]);
            if flex {
                m = m.with_unknown_tagged_field(TAG.0, TAG.1);
            }
            let d = check(ApiKey::AlterConfigs, v, &m, |r, v| {
                alter_configs(r, v, false)
            });
            assert_eq!(
                d.resources[0].changes,
                vec![
                    ConfigChange {
                        name: "retention.ms".into(),
                        op: ConfigOp::Set,
                        value: Some("1".into())
                    },
                    ConfigChange {
                        name: "x".into(),
                        op: ConfigOp::Set,
                        value: None
                    },
                ],
                "v{v}"
            );
            assert_eq!(
                (d.resources[0].resource_type, d.resources[0].name.as_str()),
                (2, "orders")
            );
        }
    }

    #[test]
    fn incremental_alter_configs_every_version() {
        for v in 0..=1 {
            let flex = flexible(ApiKey::IncrementalAlterConfigs, v);
            let cfg = |name, op, value: Option<&'static str>| {
                let mut x = km::incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(s(name))
                    .with_config_operation(op)
                    .with_value(value.map(s));
                if flex {
                    x = x.with_unknown_tagged_field(TAG.0, TAG.1);
                }
                x
            };
            let mut res = km::incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("orders"))
                .with_configs(vec![
                    cfg("a", 0, Some("1")),
                    cfg("b", 1, None),
                    cfg("c", 2, Some("x")),
                    cfg("d", 3, Some("y")),
                ]);
            if flex {
                res = res.with_unknown_tagged_field(TAG.0, TAG.1);
            }
            let mut m = km::IncrementalAlterConfigsRequest::default()
                .with_resources(vec![res])
                .with_validate_only(true);
            if flex {
                m = m.with_unknown_tagged_field(TAG.0, TAG.1);
            }
            let d = check(ApiKey::IncrementalAlterConfigs, v, &m, |r, v| {
                alter_configs(r, v, true)
            });
            let ops: Vec<ConfigOp> = d.resources[0].changes.iter().map(|c| c.op).collect();
            assert_eq!(
                ops,
                vec![
                    ConfigOp::Set,
                    ConfigOp::Delete,
                    ConfigOp::Append,
                    ConfigOp::Subtract
                ]
            );
            assert!(d.validate_only);

            // An operation Kafka does not define is refused.
            let bad = km::IncrementalAlterConfigsRequest::default().with_resources(vec![
                km::incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_configs(vec![cfg("a", 9, None)]),
            ]);
            let mut buf = bytes::BytesMut::new();
            kafka_protocol::protocol::Encodable::encode(&bad, &mut buf, v).unwrap();
            let mut r = Reader::new(buf.freeze(), 0, flex);
            assert!(alter_configs(&mut r, v, true).is_err());
        }
    }

    #[test]
    fn describe_cluster_every_version() {
        for v in 0..=2 {
            let mut m = km::DescribeClusterRequest::default()
                .with_include_cluster_authorized_operations(true)
                .with_unknown_tagged_field(TAG.0, TAG.1);
            if v >= 1 {
                m = m.with_endpoint_type(2);
            }
            if v >= 2 {
                m = m.with_include_fenced_brokers(true);
            }
            let d = check(ApiKey::DescribeCluster, v, &m, describe_cluster);
            assert_eq!(
                d,
                DescribeClusterRequest {
                    include_authorized_operations: true,
                    endpoint_type: if v >= 1 { 2 } else { 1 },
                },
                "v{v}"
            );
        }
    }
}
