//! InitProducerId: an id and epoch for an idempotent producer. A producer that names its
//! current id and epoch (KIP-360, version 3+) gets the next epoch of the same id, which
//! resets its sequence numbers on every partition; past the largest epoch it gets a new id.
//! Transactions are not served yet.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::Broker;
use crate::kafka_errors::KafkaError;

pub async fn handle(
    broker: &Broker,
    request: InitProducerIdRequest,
    _version: i16,
) -> Option<InitProducerIdResponse> {
    let response = InitProducerIdResponse::default();
    Some(match assign(broker, &request).await {
        Ok((id, epoch)) => response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch),
        Err(error) => response
            .with_error_code(error.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    })
}

async fn assign(
    broker: &Broker,
    request: &InitProducerIdRequest,
) -> Result<(i64, i16), KafkaError> {
    if request.transactional_id.is_some() {
        return Err(KafkaError::new(
            ResponseError::TransactionalIdAuthorizationFailed,
            "transactions are not supported yet",
        ));
    }
    let (id, epoch) = (request.producer_id.0, request.producer_epoch);
    if id >= 0 && (0..i16::MAX - 1).contains(&epoch) {
        return Ok((id, epoch + 1));
    }
    let id = broker.router.allocate_producer_id().await?;
    match &broker.config.cluster {
        Some(_) => Ok((crate::cluster::producer_id(broker.config.node_id, id)?, 0)),
        None => Ok((id, 0)),
    }
}
