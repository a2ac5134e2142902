//! A change to topics a client asks for (create a topic, add partitions, delete a topic),
//! as the controller leader turns it into a command: new chains placed on the registered
//! nodes the controller has not fenced, heads rotating after the partitions that exist.
//! Requests and refusals travel between nodes (a request forwarded to the leader), so
//! refusals carry their reason as text.

use super::cluster::{ClusterState, Command, Refused};
use super::placement::place;
use crate::ids::NodeId;

/// Why the controller did not create a topic.
#[derive(
    Clone, Debug, PartialEq, Eq, thiserror::Error, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[non_exhaustive]
pub enum TopicRefusal {
    /// No controller leader is known (Kafka's NOT_CONTROLLER; clients retry).
    #[error("no controller leader is known")]
    NoController,
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the controller has {0} topic requests waiting")]
    Busy(usize),
    /// The leader changed (or did not answer) before the topic was created.
    #[error("the controller leader changed before answering")]
    Lost,
}

impl From<Refused> for TopicRefusal {
    fn from(refused: Refused) -> TopicRefusal {
        match refused {
            Refused::TopicExists(name) => TopicRefusal::TopicExists(name),
            Refused::UnknownTopic(name) => TopicRefusal::UnknownTopic(name),
            refused @ (Refused::TooManyPartitions { .. } | Refused::NoPartitions) => {
                TopicRefusal::InvalidPartitions(refused.to_string())
            }
            refused => TopicRefusal::Invalid(refused.to_string()),
        }
    }
}

/// A change to topics, as a client asks for it.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum TopicChange {
    Create {
        name: String,
        partitions: u32,
        replication_factor: u16,
        /// Settings that differ from the defaults (checked by the node that took them).
        configs: Vec<(String, String)>,
    },
    /// The topic's settings that differ from the defaults become `configs`.
    Configure {
        name: String,
        configs: Vec<(String, String)>,
    },
    /// Partitions added so the topic has `total`.
    AddPartitions {
        name: String,
        total: u32,
    },
    Delete {
        name: String,
    },
}

/// The command that makes `change`, checked against `state`; `id` names a new topic.
pub fn topic_command(
    state: &ClusterState,
    change: &TopicChange,
    id: [u8; 16],
) -> Result<Command, TopicRefusal> {
    match change {
        TopicChange::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            create_topic_command(state, name, *partitions, *replication_factor, id).map(|command| {
                match command {
                    Command::CreateTopic {
                        name,
                        id,
                        replication_factor,
                        chains,
                        ..
                    } => Command::CreateTopic {
                        name,
                        id,
                        replication_factor,
                        chains,
                        configs: configs.clone(),
                    },
                    other => other,
                }
            })
        }
        TopicChange::Configure { name, configs } => {
            if state.topic(name).is_none() {
                return Err(TopicRefusal::UnknownTopic(name.clone()));
            }
            Ok(Command::SetTopicConfigs {
                name: name.clone(),
                configs: configs.clone(),
            })
        }
        TopicChange::AddPartitions { name, total } => {
            let topic = state
                .topic(name)
                .ok_or_else(|| TopicRefusal::UnknownTopic(name.clone()))?;
            let held = topic.partitions.len();
            let total_count = usize::try_from(*total).unwrap_or(usize::MAX);
            if total_count <= held || total_count > super::cluster::TOPIC_PARTITIONS_MAX {
                return Err(TopicRefusal::InvalidPartitions(format!(
                    "topic {name} has {held} partitions; a new count must be above that and at \
                     most {}, not {total}",
                    super::cluster::TOPIC_PARTITIONS_MAX
                )));
            }
            let live = live_nodes(state);
            let factor = usize::from(topic.replication_factor);
            let chains = place(&live, state.partition_count(), total_count - held, factor)
                .map_err(|error| TopicRefusal::InvalidReplicationFactor(error.to_string()))?;
            Ok(Command::CreatePartitions {
                name: name.clone(),
                chains,
            })
        }
        TopicChange::Delete { name } => {
            if state.topic(name).is_none() {
                return Err(TopicRefusal::UnknownTopic(name.clone()));
            }
            Ok(Command::DeleteTopic { name: name.clone() })
        }
    }
}

fn live_nodes(state: &ClusterState) -> Vec<NodeId> {
    state
        .nodes()
        .iter()
        .filter(|(_, record)| !record.fenced)
        .map(|(node, _)| *node)
        .collect()
}

/// The command that creates topic `name` of `partitions` chains of `factor` nodes, with
/// topic id `id`, checked against `state` (the existing topic, a placement that cannot
/// be made).
pub fn create_topic_command(
    state: &ClusterState,
    name: &str,
    partitions: u32,
    factor: u16,
    id: [u8; 16],
) -> Result<Command, TopicRefusal> {
    if state.topic(name).is_some() {
        return Err(TopicRefusal::TopicExists(name.to_owned()));
    }
    let live = live_nodes(state);
    let count = usize::try_from(partitions).unwrap_or(usize::MAX);
    if count == 0 || count > super::cluster::TOPIC_PARTITIONS_MAX {
        return Err(TopicRefusal::InvalidPartitions(format!(
            "a topic has 1 to {} partitions, not {partitions}",
            super::cluster::TOPIC_PARTITIONS_MAX
        )));
    }
    let chains = place(&live, state.partition_count(), count, usize::from(factor))
        .map_err(|error| TopicRefusal::InvalidReplicationFactor(error.to_string()))?;
    Ok(Command::CreateTopic {
        name: name.to_owned(),
        id,
        replication_factor: factor,
        chains,
        configs: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::controller::Endpoint;

    fn registered(nodes: &[u32]) -> ClusterState {
        let mut state = ClusterState::default();
        for &node in nodes {
            let endpoint = Endpoint {
                host: "127.0.0.1".into(),
                port: 9092,
            };
            state
                .apply(Command::RegisterNode {
                    node: NodeId::new(node),
                    kafka: endpoint.clone(),
                    internal: endpoint,
                    incarnation: 1,
                })
                .unwrap();
        }
        state
    }

    #[test]
    fn topics_are_placed_on_live_nodes_and_bad_requests_refused_with_the_reason() {
        let mut state = registered(&[0, 1, 2]);
        let command = create_topic_command(&state, "t", 3, 3, [1; 16]).unwrap();
        let Command::CreateTopic { chains, .. } = &command else {
            panic!("{command:?}")
        };
        assert_eq!(chains.len(), 3);
        assert!(chains.iter().all(|chain| chain.len() == 3));
        state.apply(command).unwrap();
        assert_eq!(
            create_topic_command(&state, "t", 1, 1, [2; 16]),
            Err(TopicRefusal::TopicExists("t".into()))
        );
        assert!(matches!(
            create_topic_command(&state, "u", 1, 4, [2; 16]),
            Err(TopicRefusal::InvalidReplicationFactor(_))
        ));
        assert!(matches!(
            create_topic_command(&state, "u", 0, 1, [2; 16]),
            Err(TopicRefusal::InvalidPartitions(_))
        ));
    }

    #[test]
    fn partitions_are_added_and_topics_deleted_only_when_they_exist() {
        let mut state = registered(&[0, 1, 2]);
        state
            .apply(create_topic_command(&state, "t", 2, 2, [1; 16]).unwrap())
            .unwrap();
        let add = |total| TopicChange::AddPartitions {
            name: "t".into(),
            total,
        };
        let command = topic_command(&state, &add(5), [0; 16]).unwrap();
        let Command::CreatePartitions { chains, .. } = &command else {
            panic!("{command:?}")
        };
        assert_eq!(chains.len(), 3);
        assert!(
            chains.iter().all(|chain| chain.len() == 2),
            "the topic's factor"
        );
        state.apply(command).unwrap();
        assert_eq!(state.topic("t").unwrap().partitions.len(), 5);
        assert!(matches!(
            topic_command(&state, &add(5), [0; 16]),
            Err(TopicRefusal::InvalidPartitions(_))
        ));
        let delete = |name: &str| TopicChange::Delete { name: name.into() };
        assert_eq!(
            topic_command(&state, &delete("u"), [0; 16]),
            Err(TopicRefusal::UnknownTopic("u".into()))
        );
        state
            .apply(topic_command(&state, &delete("t"), [0; 16]).unwrap())
            .unwrap();
        assert!(state.topic("t").is_none());
    }
}
