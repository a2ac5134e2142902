//! Three real `strand serve` processes on loopback forming a cluster: they elect a
//! controller and register; a SIGKILLed controller leader is fenced by the other two,
//! which elect a new leader; restarted on its data directory, it registers again and is
//! live. Seen the way an operator sees it, through `strand cluster status`.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::cluster::Cluster;

/// What an operator sees of a cluster node.
trait Operator {
    fn status(&self, id: usize) -> (bool, String);
    fn wait_for(&self, id: usize, what: &str, done: impl Fn(bool, &Status) -> bool) -> Status;
}

impl Operator for Cluster {
    /// `strand cluster status --nodes-only` against node `id`: its exit status and output.
    fn status(&self, id: usize) -> (bool, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_strand"))
            .args(["--bootstrap", &format!("127.0.0.1:{}", self.nodes[id].port)])
            .args(["cluster", "status", "--nodes-only"])
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    /// Waits until node `id`'s status satisfies `done`.
    fn wait_for(&self, id: usize, what: &str, done: impl Fn(bool, &Status) -> bool) -> Status {
        let started = Instant::now();
        loop {
            let (healthy, text) = self.status(id);
            let status = Status::parse(&text);
            if done(healthy, &status) {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what}: not within 30 s; node {id} says:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// What `cluster status` printed: the controller and each node's state.
#[derive(Debug, Default)]
struct Status {
    controller: Option<usize>,
    nodes: Vec<(usize, String)>,
}

impl Status {
    fn parse(text: &str) -> Status {
        let mut status = Status::default();
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["CONTROLLER", id] => status.controller = id.parse().ok(),
                [id, _, state] if id.trim_end_matches('*').parse::<usize>().is_ok() => {
                    let id = id.trim_end_matches('*').parse().unwrap();
                    status.nodes.push((id, (*state).to_owned()));
                }
                _ => {}
            }
        }
        status
    }

    fn all_live(&self) -> bool {
        self.nodes.len() == 3 && self.nodes.iter().all(|(_, state)| state == "live")
    }

    fn state(&self, id: usize) -> Option<&str> {
        self.nodes
            .iter()
            .find(|(node, _)| *node == id)
            .map(|(_, state)| state.as_str())
    }
}

#[test]
fn a_killed_controller_leader_is_fenced_replaced_and_taken_back() {
    let mut cluster = Cluster::start();
    let status = cluster.wait_for(0, "three live nodes and a controller", |healthy, status| {
        healthy && status.all_live() && status.controller.is_some()
    });
    let leader = status.controller.unwrap();
    for id in 0..3 {
        let (healthy, text) = cluster.status(id);
        let seen = Status::parse(&text);
        assert!(healthy && seen.all_live(), "node {id}: {text}");
    }

    cluster.kill(leader);
    let witness = (leader + 1) % 3;
    let status = cluster.wait_for(
        witness,
        "a new controller, the old one fenced",
        |healthy, status| {
            !healthy
                && status.controller.is_some_and(|c| c != leader)
                && status.state(leader) == Some("fenced")
        },
    );
    assert_eq!(status.nodes.len(), 3, "fenced nodes are listed: {status:?}");

    cluster.start_node(leader);
    cluster.wait_for(
        leader,
        "the restarted node live again",
        |healthy, status| healthy && status.all_live(),
    );
    cluster.wait_for(witness, "every node agrees", |healthy, status| {
        healthy && status.all_live()
    });
    cluster.stop();
}
