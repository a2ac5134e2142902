//! The cluster metadata the controller quorum replicates, and the commands that change it.
//!
//! Every controller node applies the same commands in the same order (the Raft log) to its
//! [`ClusterState`], so [`ClusterState::apply`] is deterministic: no clock, no randomness,
//! no liveness. Decisions that need liveness (which nodes a new topic's chains use, when a
//! node leaves a chain) are made by the controller leader and arrive here as explicit
//! commands, checked against the state they were made from: a chain change names the epoch
//! it follows, so a decision made on an older chain (by a deposed leader, or twice) is
//! refused rather than applied over a newer one.

use std::collections::BTreeMap;

use super::chain_keeper::ChainRecord;
use crate::ids::{ChainEpoch, NodeId};

/// A host and port.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A node as it last registered.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct NodeRecord {
    /// Where Kafka clients reach it (its advertised listener).
    pub kafka: Endpoint,
    /// Where other nodes reach it for controller and replication traffic.
    pub internal: Endpoint,
    /// How many times it registered: once per start of `strand serve`, and again after
    /// each fence.
    pub registrations: u64,
    /// Which run of the node registered last (its start time): a registration repeated by
    /// the same run changes nothing unless the node was fenced meanwhile.
    pub incarnation: u64,
    /// The controller found it silent past its lease (Kafka's fenced broker): clients are
    /// not sent to it until it registers again.
    pub fenced: bool,
}

/// A topic: its id and one chain per partition.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TopicRecord {
    pub id: [u8; 16],
    pub replication_factor: u16,
    pub partitions: Vec<ChainRecord>,
    /// Settings that differ from the brokers' defaults, as Kafka key/value strings.
    pub configs: Vec<(String, String)>,
}

/// A change to the cluster metadata, as the controller's log carries it.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Command {
    /// A node started (or came back after a fence): records its addresses and opens a new
    /// epoch in every chain it is attached to (see [`ChainRecord::register`]). A repeat
    /// from the same `incarnation` of a node that is not fenced changes nothing.
    RegisterNode {
        node: NodeId,
        kafka: Endpoint,
        internal: Endpoint,
        incarnation: u64,
    },
    /// A topic with one chain per partition, each of `replication_factor` nodes, head first,
    /// and its settings.
    CreateTopic {
        name: String,
        id: [u8; 16],
        replication_factor: u16,
        chains: Vec<Vec<NodeId>>,
        configs: Vec<(String, String)>,
    },
    /// More partitions for a topic, with their chains.
    CreatePartitions {
        name: String,
        chains: Vec<Vec<NodeId>>,
    },
    DeleteTopic {
        name: String,
    },
    /// A chain decision: replaces a partition's record, if its chain is the one the new
    /// chain's epoch follows.
    SetChain {
        topic: String,
        partition: u32,
        record: ChainRecord,
    },
    /// A liveness decision: the node, silent since its registration number
    /// `registrations`, is fenced. Refused if it registered again since.
    FenceNode {
        node: NodeId,
        registrations: u64,
    },
    /// A topic's settings (all that differ from the defaults) are now `configs`.
    SetTopicConfigs {
        name: String,
        configs: Vec<(String, String)>,
    },
}

/// What an applied command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    Registered {
        node: NodeId,
        registrations: u64,
    },
    TopicCreated {
        name: String,
        partitions: u32,
    },
    PartitionsCreated {
        name: String,
        partitions: u32,
    },
    TopicDeleted {
        name: String,
    },
    TopicConfigured {
        name: String,
    },
    ChainSet {
        topic: String,
        partition: u32,
        epoch: ChainEpoch,
    },
    Fenced {
        node: NodeId,
    },
}

/// Why a command changed nothing. Every controller node refuses the same commands.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("topic {topic} has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("{0} is not registered")]
    UnknownNode(NodeId),
    #[error("a chain of {len} nodes where the replication factor is {factor}")]
    ChainLength { len: usize, factor: u16 },
    #[error("{0} appears twice in one chain")]
    DuplicateNode(NodeId),
    #[error("a topic needs at least one partition")]
    NoPartitions,
    #[error("topic {topic} would have {partitions} partitions, more than {max}")]
    TooManyPartitions {
        topic: String,
        partitions: usize,
        max: usize,
    },
    #[error(
        "the chain decision for {topic}-{partition} follows {follows}, but the chain is at {current}"
    )]
    StaleChain {
        topic: String,
        partition: u32,
        follows: ChainEpoch,
        current: ChainEpoch,
    },
    #[error("{node} registered again (registration {current}) since the fence decision ({fenced})")]
    StaleFence {
        node: NodeId,
        fenced: u64,
        current: u64,
    },
    #[error("the log entry at index {index} is not a command ({reason})")]
    Undecodable { index: u64, reason: String },
}

/// Why bytes could not be read as a command or a state image.
#[derive(Debug, thiserror::Error)]
#[error("undecodable {what}: {reason}")]
pub struct DecodeError {
    pub what: &'static str,
    pub reason: String,
}

/// The most partitions a topic may have, as Kafka clients' int32 partition ids allow and as
/// the engine's per-shard bounds make sense of.
pub const TOPIC_PARTITIONS_MAX: usize = 100_000;

/// The cluster metadata: nodes and topics with their chains.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct ClusterState {
    nodes: BTreeMap<NodeId, NodeRecord>,
    topics: BTreeMap<String, TopicRecord>,
}

impl ClusterState {
    pub fn nodes(&self) -> &BTreeMap<NodeId, NodeRecord> {
        &self.nodes
    }

    pub fn topics(&self) -> &BTreeMap<String, TopicRecord> {
        &self.topics
    }

    pub fn topic(&self, name: &str) -> Option<&TopicRecord> {
        self.topics.get(name)
    }

    /// How many partitions all topics have together (new chains start their heads after
    /// these, so heads spread across nodes topic after topic).
    pub fn partition_count(&self) -> usize {
        self.topics
            .values()
            .map(|topic| topic.partitions.len())
            .sum()
    }

    /// Applies one command.
    pub fn apply(&mut self, command: Command) -> Result<Applied, Refused> {
        match command {
            Command::RegisterNode {
                node,
                kafka,
                internal,
                incarnation,
            } => Ok(self.register(node, kafka, internal, incarnation)),
            Command::CreateTopic {
                name,
                id,
                replication_factor,
                chains,
                configs,
            } => self.create_topic(name, id, replication_factor, &chains, configs),
            Command::CreatePartitions { name, chains } => self.create_partitions(name, &chains),
            Command::DeleteTopic { name } => match self.topics.remove(&name) {
                Some(_) => Ok(Applied::TopicDeleted { name }),
                None => Err(Refused::UnknownTopic(name)),
            },
            Command::SetChain {
                topic,
                partition,
                record,
            } => self.set_chain(topic, partition, record),
            Command::FenceNode {
                node,
                registrations,
            } => self.fence(node, registrations),
            Command::SetTopicConfigs { name, configs } => match self.topics.get_mut(&name) {
                Some(topic) => {
                    topic.configs = configs;
                    Ok(Applied::TopicConfigured { name })
                }
                None => Err(Refused::UnknownTopic(name)),
            },
        }
    }

    /// The state as bytes (a Raft snapshot's data).
    pub fn encode(&self) -> Vec<u8> {
        rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .expect("cluster state serializes")
            .into_vec()
    }

    /// Reads bytes made by [`ClusterState::encode`], validating them first.
    pub fn decode(bytes: &[u8]) -> Result<ClusterState, DecodeError> {
        decode_checked(bytes, "cluster state")
    }

    fn register(
        &mut self,
        node: NodeId,
        kafka: Endpoint,
        internal: Endpoint,
        incarnation: u64,
    ) -> Applied {
        if let Some(record) = self.nodes.get(&node)
            && record.incarnation == incarnation
            && !record.fenced
        {
            // The same run asked again (its answer was slow or lost).
            return Applied::Registered {
                node,
                registrations: record.registrations,
            };
        }
        let registrations = self
            .nodes
            .get(&node)
            .map_or(1, |record| record.registrations + 1);
        self.nodes.insert(
            node,
            NodeRecord {
                kafka,
                internal,
                registrations,
                incarnation,
                fenced: false,
            },
        );
        for topic in self.topics.values_mut() {
            for record in &mut topic.partitions {
                if record.chain.attached(node).is_some() {
                    record.register(node);
                }
            }
        }
        Applied::Registered {
            node,
            registrations,
        }
    }

    fn create_topic(
        &mut self,
        name: String,
        id: [u8; 16],
        replication_factor: u16,
        chains: &[Vec<NodeId>],
        configs: Vec<(String, String)>,
    ) -> Result<Applied, Refused> {
        if self.topics.contains_key(&name) {
            return Err(Refused::TopicExists(name));
        }
        if chains.is_empty() {
            return Err(Refused::NoPartitions);
        }
        let partitions = self.new_chains(&name, 0, replication_factor, chains)?;
        let count = u32::try_from(partitions.len()).expect("partitions are bounded");
        self.topics.insert(
            name.clone(),
            TopicRecord {
                id,
                replication_factor,
                partitions,
                configs,
            },
        );
        Ok(Applied::TopicCreated {
            name,
            partitions: count,
        })
    }

    fn create_partitions(
        &mut self,
        name: String,
        chains: &[Vec<NodeId>],
    ) -> Result<Applied, Refused> {
        let Some(topic) = self.topics.get(&name) else {
            return Err(Refused::UnknownTopic(name));
        };
        let new = self.new_chains(
            &name,
            topic.partitions.len(),
            topic.replication_factor,
            chains,
        )?;
        let topic = self.topics.get_mut(&name).expect("checked above");
        topic.partitions.extend(new);
        let partitions = u32::try_from(topic.partitions.len()).expect("partitions are bounded");
        Ok(Applied::PartitionsCreated { name, partitions })
    }

    /// Checks chains for new partitions: registered nodes, no repeats, the right length.
    fn new_chains(
        &self,
        topic: &str,
        existing: usize,
        factor: u16,
        chains: &[Vec<NodeId>],
    ) -> Result<Vec<ChainRecord>, Refused> {
        let partitions = existing + chains.len();
        if partitions > TOPIC_PARTITIONS_MAX {
            return Err(Refused::TooManyPartitions {
                topic: topic.to_owned(),
                partitions,
                max: TOPIC_PARTITIONS_MAX,
            });
        }
        let mut records = Vec::with_capacity(chains.len());
        for chain in chains {
            if chain.len() != usize::from(factor) || chain.is_empty() {
                return Err(Refused::ChainLength {
                    len: chain.len(),
                    factor,
                });
            }
            for (at, node) in chain.iter().enumerate() {
                if !self.nodes.contains_key(node) {
                    return Err(Refused::UnknownNode(*node));
                }
                if chain[..at].contains(node) {
                    return Err(Refused::DuplicateNode(*node));
                }
            }
            records.push(ChainRecord::new(chain));
        }
        Ok(records)
    }

    fn fence(&mut self, node: NodeId, registrations: u64) -> Result<Applied, Refused> {
        let Some(record) = self.nodes.get_mut(&node) else {
            return Err(Refused::UnknownNode(node));
        };
        if record.registrations != registrations {
            return Err(Refused::StaleFence {
                node,
                fenced: registrations,
                current: record.registrations,
            });
        }
        record.fenced = true;
        Ok(Applied::Fenced { node })
    }

    fn set_chain(
        &mut self,
        topic: String,
        partition: u32,
        record: ChainRecord,
    ) -> Result<Applied, Refused> {
        let Some(current) = self.topics.get_mut(&topic).and_then(|t| {
            usize::try_from(partition)
                .ok()
                .and_then(|at| t.partitions.get_mut(at))
        }) else {
            return Err(Refused::UnknownPartition { topic, partition });
        };
        if current.chain.epoch.next() != record.chain.epoch {
            return Err(Refused::StaleChain {
                topic,
                partition,
                follows: ChainEpoch::new(record.chain.epoch.value().saturating_sub(1)),
                current: current.chain.epoch,
            });
        }
        let epoch = record.chain.epoch;
        // The commit epoch only rises: it is what a head reported, never a guess.
        let commit_epoch = current.commit_epoch.max(record.commit_epoch);
        *current = record;
        current.commit_epoch = commit_epoch;
        Ok(Applied::ChainSet {
            topic,
            partition,
            epoch,
        })
    }
}

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .expect("a command serializes")
            .into_vec()
    }

    /// Reads bytes made by [`Command::encode`], validating them first.
    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        decode_checked(bytes, "command")
    }
}

/// Validates (bytecheck) and deserializes rkyv bytes, after copying them to aligned memory.
fn decode_checked<T>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError>
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<T, rkyv::rancor::Error>(&aligned).map_err(|error| DecodeError {
        what,
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u32) -> NodeId {
        NodeId::new(id)
    }

    fn endpoint(port: u16) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".to_owned(),
            port,
        }
    }

    fn registered(nodes: &[u32]) -> ClusterState {
        let mut state = ClusterState::default();
        for &id in nodes {
            let port = u16::try_from(9000 + id).expect("small ids");
            state
                .apply(Command::RegisterNode {
                    node: node(id),
                    kafka: endpoint(port),
                    internal: endpoint(port + 100),
                    incarnation: u64::from(id),
                })
                .expect("registration is always taken");
        }
        state
    }

    fn create(name: &str, chains: &[&[u32]]) -> Command {
        let chains: Vec<Vec<NodeId>> = chains
            .iter()
            .map(|chain| chain.iter().map(|&id| node(id)).collect())
            .collect();
        Command::CreateTopic {
            name: name.to_owned(),
            id: [7; 16],
            replication_factor: u16::try_from(chains[0].len()).expect("short chains"),
            chains,
            configs: Vec::new(),
        }
    }

    /// Each case: a command against a three-node cluster holding topic `t` (two partitions
    /// on 1,2,3 and 2,3,1), and the outcome.
    #[test]
    fn commands_are_checked_against_the_state() {
        let check = |command: Command, expected: Result<Applied, Refused>| {
            let mut state = registered(&[1, 2, 3]);
            state
                .apply(create("t", &[&[1, 2, 3], &[2, 3, 1]]))
                .expect("created");
            let before = state.clone();
            let outcome = state.apply(command.clone());
            assert_eq!(outcome, expected, "{command:?}");
            if outcome.is_err() {
                assert_eq!(state, before, "a refused command changes nothing");
            }
        };
        check(
            create("t", &[&[1, 2, 3]]),
            Err(Refused::TopicExists("t".to_owned())),
        );
        check(
            create("u", &[&[1, 4, 3]]),
            Err(Refused::UnknownNode(node(4))),
        );
        check(
            create("u", &[&[1, 1, 3]]),
            Err(Refused::DuplicateNode(node(1))),
        );
        check(
            Command::CreateTopic {
                name: "u".to_owned(),
                id: [0; 16],
                replication_factor: 2,
                chains: vec![],
                configs: Vec::new(),
            },
            Err(Refused::NoPartitions),
        );
        check(
            Command::CreatePartitions {
                name: "t".to_owned(),
                chains: vec![vec![node(3), node(1)]],
            },
            Err(Refused::ChainLength { len: 2, factor: 3 }),
        );
        check(
            Command::CreatePartitions {
                name: "t".to_owned(),
                chains: vec![vec![node(3), node(1), node(2)]],
            },
            Ok(Applied::PartitionsCreated {
                name: "t".to_owned(),
                partitions: 3,
            }),
        );
        check(
            Command::DeleteTopic {
                name: "nope".to_owned(),
            },
            Err(Refused::UnknownTopic("nope".to_owned())),
        );
        let mut next = ChainRecord::new(&[node(2), node(3)]);
        next.chain.epoch = ChainEpoch::new(2);
        check(
            Command::SetChain {
                topic: "t".to_owned(),
                partition: 0,
                record: next.clone(),
            },
            Ok(Applied::ChainSet {
                topic: "t".to_owned(),
                partition: 0,
                epoch: ChainEpoch::new(2),
            }),
        );
        let mut skipping = next.clone();
        skipping.chain.epoch = ChainEpoch::new(3);
        check(
            Command::SetChain {
                topic: "t".to_owned(),
                partition: 0,
                record: skipping,
            },
            Err(Refused::StaleChain {
                topic: "t".to_owned(),
                partition: 0,
                follows: ChainEpoch::new(2),
                current: ChainEpoch::new(1),
            }),
        );
        check(
            Command::SetChain {
                topic: "t".to_owned(),
                partition: 2,
                record: next,
            },
            Err(Refused::UnknownPartition {
                topic: "t".to_owned(),
                partition: 2,
            }),
        );
    }

    #[test]
    fn a_registration_opens_an_epoch_in_every_chain_the_node_is_on() {
        let mut state = registered(&[1, 2, 3]);
        state
            .apply(create("t", &[&[1, 2], &[3, 1], &[2, 3]]))
            .expect("created");
        let outcome = state.apply(Command::RegisterNode {
            node: node(1),
            kafka: endpoint(1),
            internal: endpoint(2),
            incarnation: 100,
        });
        assert_eq!(
            outcome,
            Ok(Applied::Registered {
                node: node(1),
                registrations: 2
            })
        );
        let epochs: Vec<u64> = state.topic("t").expect("exists").partitions[..]
            .iter()
            .map(|record| record.chain.epoch.value())
            .collect();
        assert_eq!(epochs, vec![2, 2, 1]);
        assert_eq!(state.nodes()[&node(1)].kafka, endpoint(1));
    }

    #[test]
    fn a_fence_holds_until_the_node_registers_again_and_a_stale_one_is_refused() {
        let mut state = registered(&[1, 2]);
        let fence = Command::FenceNode {
            node: node(1),
            registrations: 1,
        };
        assert_eq!(
            state.apply(fence.clone()),
            Ok(Applied::Fenced { node: node(1) })
        );
        assert!(state.nodes()[&node(1)].fenced);
        assert!(!state.nodes()[&node(2)].fenced);
        // The same run, paused past the silence, registers again: that unfences it.
        let again = Command::RegisterNode {
            node: node(1),
            kafka: endpoint(1),
            internal: endpoint(2),
            incarnation: 1,
        };
        assert_eq!(
            state.apply(again.clone()),
            Ok(Applied::Registered {
                node: node(1),
                registrations: 2
            })
        );
        assert!(!state.nodes()[&node(1)].fenced, "registering unfences");
        // Repeated by that run while live (a slow answer), it changes nothing.
        let before = state.clone();
        assert_eq!(
            state.apply(again),
            Ok(Applied::Registered {
                node: node(1),
                registrations: 2
            })
        );
        assert_eq!(state, before);
        let before = state.clone();
        assert_eq!(
            state.apply(fence),
            Err(Refused::StaleFence {
                node: node(1),
                fenced: 1,
                current: 2
            })
        );
        assert_eq!(state, before);
        assert_eq!(
            state.apply(Command::FenceNode {
                node: node(9),
                registrations: 1
            }),
            Err(Refused::UnknownNode(node(9)))
        );
    }

    #[test]
    fn state_and_commands_survive_encoding_and_garbage_is_refused() {
        let mut state = registered(&[1, 2]);
        let command = create("t", &[&[1, 2]]);
        assert_eq!(
            Command::decode(&command.encode()).expect("decodes"),
            command
        );
        state.apply(command).expect("created");
        assert_eq!(
            ClusterState::decode(&state.encode()).expect("decodes"),
            state
        );
        let mut bytes = state.encode();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        bytes.truncate(last);
        assert!(ClusterState::decode(&bytes).is_err());
        assert!(Command::decode(&[1, 2, 3]).is_err());
    }
}
