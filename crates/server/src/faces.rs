//! The faces this server serves, in the order their listeners start. A new
//! face adds its spec here and its wiring in `Server::start`: its flags,
//! config keys and listeners follow from the spec.

use ferry_face::{FaceSpec, Transport};

/// The admin HTTP API and web console (RabbitMQ's management ports).
pub static ADMIN: FaceSpec = FaceSpec {
    name: "admin",
    about: "the admin HTTP API and web console",
    transport: Transport::Http,
    port: 15672,
    tls_port: 15671,
    tls_name: None,
    holds_back: "a test message published through it is refused like an SQS send",
};

/// The AWS APIs, dispatched by target on one HTTP listener: SQS now, SNS
/// and Kinesis to come.
pub static AWS: FaceSpec = FaceSpec {
    name: "aws",
    about: "the AWS APIs (SQS) over HTTP",
    transport: Transport::Http,
    port: 9324,
    tls_port: 9325,
    tls_name: None,
    holds_back: "SendMessage and SendMessageBatch answer RequestThrottled",
};

/// Every face, in start order.
pub static FACES: [&FaceSpec; 4] = [&ADMIN, &AWS, &ferry_amqp::SPEC, &ferry_kafka::SPEC];

/// The spec of the face named `name`.
pub fn find(name: &str) -> Option<&'static FaceSpec> {
    FACES.iter().copied().find(|f| f.name == name)
}
