//! Classifies producer errors for the dispatcher.

use polaris_bridge_api::DeliveryError;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// What a failed produce means: retry (transient), dead-letter (permanent) or fix the
/// configuration (misconfigured).
pub fn classify(topic: &str, error: &KafkaError) -> DeliveryError {
    let code = error.rdkafka_error_code();
    let message = format!("produce to {topic}: {error}");
    match code {
        // The record can never fit: dead-letter it with the reason.
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::PolicyViolation,
        ) => DeliveryError::permanent(format!(
            "{message} (the broker will never accept this record: check the topic's \
             max.message.bytes and the producer's message.max.bytes)"
        )),
        // Wrong topic name or missing rights: every record would fail alike.
        Some(
            RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::InvalidRequiredAcks,
        ) => DeliveryError::misconfigured(format!(
            "{message}; fix the connector's `topic` or the principal's ACLs (WRITE and \
             IDEMPOTENT_WRITE)"
        )),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            DeliveryError::transient(format!(
                "{message}; the topic does not exist (yet): create it, or enable auto-creation"
            ))
        }
        // Timeouts, unavailable leaders, not enough replicas, network, fatal idempotence
        // errors (the producer is rebuilt): try again later.
        _ => DeliveryError::transient(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_large_is_permanent_timeouts_transient_acl_misconfigured() {
        let e = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert_eq!(classify("t", &e).label(), "permanent");
        let e = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert_eq!(classify("t", &e).label(), "transient");
        let e = KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicas);
        assert_eq!(classify("t", &e).label(), "transient");
        let e = KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed);
        assert_eq!(classify("t", &e).label(), "misconfigured");
        let e = KafkaError::MessageProduction(RDKafkaErrorCode::UnknownTopicOrPartition);
        let err = classify("t", &e);
        assert_eq!(err.label(), "transient");
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
