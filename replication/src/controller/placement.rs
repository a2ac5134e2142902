//! Where a new partition's chain goes: `replication.factor` distinct live nodes, with heads
//! (which take every produce) rotating across nodes, so load spreads as topics are added.

use crate::ids::NodeId;

/// Why no chains could be placed (Kafka's INVALID_REPLICATION_FACTOR).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    #[error("replication factor {factor} needs {factor} live nodes, and {live} are live")]
    NotEnoughNodes { factor: usize, live: usize },
    #[error("replication factor must be at least 1, got {0}")]
    ZeroFactor(usize),
}

/// Chains for `partitions` new partitions of `factor` nodes each, taken from `nodes` (the
/// live nodes, in order); partition `i`'s chain starts at `nodes[(start + i) % n]` and
/// goes on through the following nodes.
pub fn place(
    nodes: &[NodeId],
    start: usize,
    partitions: usize,
    factor: usize,
) -> Result<Vec<Vec<NodeId>>, PlacementError> {
    if factor == 0 {
        return Err(PlacementError::ZeroFactor(factor));
    }
    if factor > nodes.len() {
        return Err(PlacementError::NotEnoughNodes {
            factor,
            live: nodes.len(),
        });
    }
    Ok((0..partitions)
        .map(|partition| {
            (0..factor)
                .map(|at| nodes[(start + partition + at) % nodes.len()])
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(nodes: &[u32], start: usize, partitions: usize, factor: usize, expected: &[&[u32]]) {
        let nodes: Vec<NodeId> = nodes.iter().map(|&id| NodeId::new(id)).collect();
        let chains = place(&nodes, start, partitions, factor).expect("placeable");
        let chains: Vec<Vec<u32>> = chains
            .iter()
            .map(|chain| chain.iter().map(|node| node.value()).collect())
            .collect();
        assert_eq!(chains, expected);
    }

    #[test]
    fn heads_rotate_and_chains_hold_distinct_nodes() {
        check(&[1, 2, 3], 0, 3, 3, &[&[1, 2, 3], &[2, 3, 1], &[3, 1, 2]]);
        check(&[1, 2, 3], 4, 2, 2, &[&[2, 3], &[3, 1]]);
        check(&[5], 9, 2, 1, &[&[5], &[5]]);
    }

    #[test]
    fn too_few_nodes_or_no_replicas_is_refused() {
        let nodes = [NodeId::new(1), NodeId::new(2)];
        assert_eq!(
            place(&nodes, 0, 1, 3),
            Err(PlacementError::NotEnoughNodes { factor: 3, live: 2 })
        );
        assert_eq!(place(&nodes, 0, 1, 0), Err(PlacementError::ZeroFactor(0)));
    }
}
