//! The `authorized_operations` bitfields of Metadata, DescribeCluster, DescribeGroups and
//! DescribeTopicPartitions: bit `n` is Kafka's `AclOperation` with code `n`. Strand has no
//! authorizer yet, so every operation a resource type has is allowed; a client that does
//! not ask gets Kafka's "not asked" value, `i32::MIN`.

/// `AclOperation` codes.
const READ: i32 = 3;
const WRITE: i32 = 4;
const CREATE: i32 = 5;
const DELETE: i32 = 6;
const ALTER: i32 = 7;
const DESCRIBE: i32 = 8;
const CLUSTER_ACTION: i32 = 9;
const DESCRIBE_CONFIGS: i32 = 10;
const ALTER_CONFIGS: i32 = 11;
const IDEMPOTENT_WRITE: i32 = 12;

const fn bits(operations: &[i32]) -> i32 {
    let mut out = 0;
    let mut at = 0;
    while at < operations.len() {
        out |= 1 << operations[at];
        at += 1;
    }
    out
}

/// Every operation on a topic (3576, as Kafka reports for a superuser).
pub const TOPIC: i32 = bits(&[
    READ,
    WRITE,
    CREATE,
    DELETE,
    ALTER,
    DESCRIBE,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
]);
/// Every operation on a consumer group (328).
pub const GROUP: i32 = bits(&[READ, DESCRIBE, DELETE]);
/// Every operation on the cluster (8096).
pub const CLUSTER: i32 = bits(&[
    CREATE,
    ALTER,
    DESCRIBE,
    CLUSTER_ACTION,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
    IDEMPOTENT_WRITE,
]);

#[cfg(test)]
mod tests {
    #[test]
    fn the_bitfields_are_kafkas() {
        assert_eq!(super::TOPIC, 3576);
        assert_eq!(super::GROUP, 328);
        assert_eq!(super::CLUSTER, 8096);
    }
}
