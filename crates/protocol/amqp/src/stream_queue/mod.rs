//! RabbitMQ stream queues (`x-queue-type: stream`) on ferry's streams
//! engine: a stream queue is a stream of the vhost's namespace, so the
//! Kafka topic of the same name is the same log.
//!
//! - [`arguments`]: declare arguments to a stream's config, and where a
//!   consumer starts (`x-stream-offset`).
//! - [`reader`]: one task per consumer and partition that reads the log
//!   and hands records to the connection as messages, as far as the
//!   consumer's credit goes.
//!
//! Consumers must ack (manual acks are credit, as in RabbitMQ: an ack,
//! nack or reject gives one delivery's room back and removes nothing).

pub mod arguments;
pub mod reader;

/// The header each delivery carries its offset in, as RabbitMQ's do.
pub const OFFSET_HEADER: &str = "x-stream-offset";
/// On a stream of several partitions (a Kafka topic), the partition a
/// delivery came from.
pub const PARTITION_HEADER: &str = "x-stream-partition";
