//! Consumer groups with librdkafka against real `strand serve` processes: point-to-point
//! (one group shares the partitions), publish/subscribe (every group sees everything),
//! rebalances when members leave or join, and a group that resumes from its commits after
//! a broker restart.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use support::Broker;

const WAIT: Duration = Duration::from_secs(60);
const PARTITIONS: i32 = 6;

fn create_topic(broker: &Broker, name: &str) {
    let admin: AdminClient<DefaultClientContext> = broker.client_config().create().unwrap();
    let topic = NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(1));
    let results = block_on(admin.create_topics(&[topic], &AdminOptions::new())).unwrap();
    assert!(results[0].is_ok(), "{:?}", results[0]);
}

/// Sends messages `range` with values `"{i}"`, spread over the partitions by key.
fn produce(broker: &Broker, topic: &str, range: std::ops::Range<u32>) {
    let producer: BaseProducer = broker
        .client_config()
        .set("linger.ms", "2")
        .create()
        .unwrap();
    for i in range {
        let (key, value) = (format!("key-{i}"), i.to_string());
        let partition = i32::try_from(i).unwrap() % PARTITIONS;
        let record = BaseRecord::to(topic)
            .key(&key)
            .payload(&value)
            .partition(partition);
        producer.send(record).unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(WAIT).unwrap();
}

fn member(broker: &Broker, group: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "200")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// Polls every member until the group's assignment covers every partition, each once.
fn settle(members: &[&BaseConsumer]) {
    let deadline = Instant::now() + WAIT;
    loop {
        for member in members {
            let _ = member.poll(Duration::from_millis(50));
        }
        let assigned: Vec<i32> = members
            .iter()
            .flat_map(|member| {
                member
                    .assignment()
                    .unwrap()
                    .elements()
                    .iter()
                    .map(|element| element.partition())
                    .collect::<Vec<_>>()
            })
            .collect();
        let distinct: BTreeSet<i32> = assigned.iter().copied().collect();
        if assigned.len() == usize::try_from(PARTITIONS).unwrap()
            && distinct.len() == assigned.len()
            && members
                .iter()
                .all(|m| !m.assignment().unwrap().elements().is_empty())
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the group never settled: {assigned:?}"
        );
    }
}

/// Polls the members round-robin until `expected` messages arrived in total, committing
/// each one; returns the values each member got.
fn drain(members: &[&BaseConsumer], expected: usize) -> Vec<Vec<u32>> {
    let mut got = vec![Vec::new(); members.len()];
    let deadline = Instant::now() + WAIT;
    while got.iter().map(Vec::len).sum::<usize>() < expected {
        assert!(
            Instant::now() < deadline,
            "only {:?} arrived",
            got.iter().map(Vec::len).collect::<Vec<_>>()
        );
        for (index, member) in members.iter().enumerate() {
            if let Some(message) = member.poll(Duration::from_millis(20)) {
                let message = message.unwrap();
                let value = std::str::from_utf8(message.payload().unwrap()).unwrap();
                got[index].push(value.parse().unwrap());
                member.commit_message(&message, CommitMode::Sync).unwrap();
            }
        }
    }
    got
}

fn sorted(values: impl IntoIterator<Item = u32>) -> Vec<u32> {
    let mut values: Vec<u32> = values.into_iter().collect();
    values.sort_unstable();
    values
}

#[test]
fn one_group_shares_the_work_and_rebalances_when_members_leave_and_join() {
    let broker = Broker::start();
    create_topic(&broker, "work");
    let (a, b, c) = (
        member(&broker, "workers", "work"),
        member(&broker, "workers", "work"),
        member(&broker, "workers", "work"),
    );
    settle(&[&a, &b, &c]);
    produce(&broker, "work", 0..600);
    let got = drain(&[&a, &b, &c], 600);
    for share in &got {
        assert!(
            !share.is_empty(),
            "a member got nothing: {:?}",
            got.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }
    assert_eq!(
        sorted(got.concat()),
        (0..600).collect::<Vec<_>>(),
        "each message once"
    );

    // One member leaves: the other two take over its partitions from its commits.
    drop(c);
    settle(&[&a, &b]);
    produce(&broker, "work", 600..900);
    let got = drain(&[&a, &b], 300);
    assert_eq!(sorted(got.concat()), (600..900).collect::<Vec<_>>());

    // A new member joins and gets a share.
    let d = member(&broker, "workers", "work");
    settle(&[&a, &b, &d]);
    produce(&broker, "work", 900..1200);
    let got = drain(&[&a, &b, &d], 300);
    assert_eq!(sorted(got.concat()), (900..1200).collect::<Vec<_>>());

    let groups = a.fetch_group_list(Some("workers"), WAIT).unwrap();
    let group = &groups.groups()[0];
    assert_eq!(group.state(), "Stable");
    assert_eq!(group.members().len(), 3);
}

#[test]
fn every_group_sees_every_message() {
    let broker = Broker::start();
    create_topic(&broker, "news");
    produce(&broker, "news", 0..300);
    for group in ["readers-a", "readers-b"] {
        let reader = member(&broker, group, "news");
        let got = drain(&[&reader], 300);
        assert_eq!(
            sorted(got.concat()),
            (0..300).collect::<Vec<_>>(),
            "{group}"
        );
    }
}

#[test]
fn a_group_resumes_from_its_commits_after_a_broker_restart() {
    let data = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(data.path());
    create_topic(&broker, "jobs");
    produce(&broker, "jobs", 0..200);
    {
        let worker = member(&broker, "resumers", "jobs");
        assert_eq!(
            sorted(drain(&[&worker], 200).concat()),
            (0..200).collect::<Vec<_>>()
        );
    }
    broker.stop();
    let broker = Broker::start_in(data.path());
    produce(&broker, "jobs", 200..250);
    let worker = member(&broker, "resumers", "jobs");
    let got = drain(&[&worker], 50);
    assert_eq!(
        sorted(got.concat()),
        (200..250).collect::<Vec<_>>(),
        "resumed at the commits"
    );
    let committed = worker.committed(WAIT).unwrap();
    let offsets: BTreeMap<i32, i64> = committed
        .elements()
        .iter()
        .map(|element| (element.partition(), element.offset().to_raw().unwrap()))
        .collect();
    assert_eq!(offsets.values().sum::<i64>(), 250, "{offsets:?}");
}

fn static_member(broker: &Broker, instance: &str) -> BaseConsumer {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "statics")
        .set("group.instance.id", instance)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "3000")
        .set("heartbeat.interval.ms", "200")
        .create()
        .unwrap();
    consumer.subscribe(&["statics"]).unwrap();
    consumer
}

fn partitions_of(consumer: &BaseConsumer) -> BTreeSet<i32> {
    consumer
        .assignment()
        .unwrap()
        .elements()
        .iter()
        .map(|element| element.partition())
        .collect()
}

#[test]
fn a_static_member_rejoins_without_a_rebalance_and_expires_after_its_session() {
    let broker = Broker::start();
    create_topic(&broker, "statics");
    let first = static_member(&broker, "w1");
    let other = static_member(&broker, "w2");
    settle(&[&first, &other]);
    let kept = partitions_of(&other);
    // A static member closes without leaving; its replacement takes its place at once.
    drop(first);
    let again = static_member(&broker, "w1");
    settle(&[&again, &other]);
    assert_eq!(
        partitions_of(&other),
        kept,
        "the other member's partitions moved"
    );
    // Gone for longer than its session: the group rebalances its partitions away.
    drop(again);
    settle(&[&other]);
    assert_eq!(
        partitions_of(&other).len(),
        usize::try_from(PARTITIONS).unwrap()
    );
}
