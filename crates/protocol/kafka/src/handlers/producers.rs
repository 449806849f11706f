//! InitProducerId: ids for idempotent producers (transactional ids come
//! with transactions, in a later release).

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, InitProducerIdResponse, ProducerId};

use super::frame;
use crate::Kafka;
use crate::session::Answer;
use crate::wire::{self, DecodeError, Header, Reader};

pub fn init_producer_id(
    kafka: &Arc<Kafka>,
    h: &Header,
    r: &mut Reader,
) -> Result<Answer, DecodeError> {
    let req = wire::init_producer_id(r, h.version)?;
    let mut resp = InitProducerIdResponse::default();
    if req.transactional_id.is_some() {
        resp.error_code = ResponseError::UnsupportedVersion.code();
        resp.producer_id = ProducerId(-1);
        resp.producer_epoch = -1;
    } else if req.producer_id >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX {
        // A producer bumping its epoch after an error keeps its id; its
        // sequences start again at 0.
        resp.producer_id = ProducerId(req.producer_id);
        resp.producer_epoch = req.producer_epoch + 1;
    } else {
        resp.producer_id = ProducerId(kafka.streams.new_producer_id());
        resp.producer_epoch = 0;
    }
    Ok(Answer::Now(frame(
        h,
        ApiKey::InitProducerId,
        h.version,
        &resp,
    )))
}
