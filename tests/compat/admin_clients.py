"""Compatibility cases for admin clients: confluent-kafka's AdminClient and kafka-python's
KafkaAdminClient (2.x and 3.x) against the broker at argv[1]. argv[2] is the client,
argv[3] (optional) the name reported, so that two versions of one library can run side by
side (`kafka-python-2.3`); topics and groups are named after it. Prints one line per case:
`<client> <case> PASS|FAIL [detail]`.

Cases:
  admin-topics   CreateTopics with configs, then the topics seen by Metadata
                 (list_topics, describe_topics)
  admin-configs  DescribeConfigs of a topic (the set values, their source, defaults such as
                 segment.bytes) and of the broker; an (incremental) alter, described again
  admin-groups   a consumer that has committed: ListGroups, DescribeGroups, OffsetFetch via
                 the admin client, then DeleteGroups once it has left
  admin-records  ListOffsets, DeleteRecords, ListOffsets again (the log start moved)
  admin-logdirs  DescribeLogDirs (kafka-python only: librdkafka has no DescribeLogDirs)
"""

import sys
import time

from python_clients import run_case

TIMEOUT = 30
MESSAGES = 10
RETENTION, RETENTION_ALTERED = "3600000", "7200000"


def names(name):
    return f"admin-{name}-compacted", f"admin-{name}-plain", f"admin-{name}-group"


# --- confluent-kafka -------------------------------------------------------------------


def confluent(bootstrap, name):
    from confluent_kafka import (Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions,
                                 Producer, TopicCollection, TopicPartition)
    from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                       ConfigResource, ConfigSource, NewTopic, OffsetSpec,
                                       ResourceType)

    compacted, plain, group = names(name)
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def topics():
        futures = admin.create_topics(
            [NewTopic(compacted, num_partitions=2, replication_factor=1,
                      config={"cleanup.policy": "compact", "retention.ms": RETENTION}),
             NewTopic(plain, num_partitions=1, replication_factor=1)],
            operation_timeout=TIMEOUT, request_timeout=TIMEOUT)
        for future in futures.values():
            future.result(TIMEOUT)
        listed = admin.list_topics(timeout=TIMEOUT).topics
        if compacted not in listed or plain not in listed:
            return False, f"list_topics lacks the new topics: {sorted(listed)}"
        described = admin.describe_topics(TopicCollection([compacted, plain]),
                                          request_timeout=TIMEOUT)
        counts = {}
        for topic, future in described.items():
            description = future.result(TIMEOUT)
            leaders = {p.leader.id for p in description.partitions}
            if leaders != {0}:
                return False, f"{topic}: leaders {leaders}"
            counts[topic] = len(description.partitions)
        ok = len(listed[compacted].partitions) == 2 and counts == {compacted: 2, plain: 1}
        return ok, f"partitions {counts}"

    def describe(topic):
        resources = [ConfigResource(ResourceType.TOPIC, topic),
                     ConfigResource(ResourceType.BROKER, "0")]
        futures = admin.describe_configs(resources, request_timeout=TIMEOUT)
        return [futures[r].result(TIMEOUT) for r in resources]

    def configs():
        topic_configs, broker_configs = describe(compacted)
        got = {key: topic_configs[key].value for key in ("cleanup.policy", "retention.ms")
               if key in topic_configs}
        if got != {"cleanup.policy": "compact", "retention.ms": RETENTION}:
            return False, f"topic configs {got}"
        source = topic_configs["cleanup.policy"].source
        if source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value:
            return False, f"cleanup.policy source {source}, not DYNAMIC_TOPIC_CONFIG"
        if "segment.bytes" not in topic_configs:
            return False, "no segment.bytes among the topic's configs"
        if "log.segment.bytes" not in broker_configs:
            return False, f"no log.segment.bytes among {len(broker_configs)} broker configs"
        alter = ConfigResource(ResourceType.TOPIC, compacted, incremental_configs=[
            ConfigEntry("retention.ms", RETENTION_ALTERED,
                        incremental_operation=AlterConfigOpType.SET)])
        for future in admin.incremental_alter_configs([alter]).values():
            future.result(TIMEOUT)
        topic_configs, _ = describe(compacted)
        after = {key: topic_configs[key].value for key in ("cleanup.policy", "retention.ms")}
        ok = after == {"cleanup.policy": "compact", "retention.ms": RETENTION_ALTERED}
        return ok, (f"{len(topic_configs)} topic and {len(broker_configs)} broker configs, "
                    f"after the incremental alter {after}")

    def groups():
        producer = Producer({"bootstrap.servers": bootstrap})
        for i in range(MESSAGES):
            producer.produce(plain, key=f"key-{i}", value=f"value-{i}")
        if producer.flush(TIMEOUT) != 0:
            return False, "produce did not finish"
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        try:
            consumer.subscribe([plain])
            got, deadline = 0, time.time() + TIMEOUT
            while got < MESSAGES and time.time() < deadline:
                message = consumer.poll(1.0)
                if message is not None and message.error() is None:
                    got += 1
            if got < MESSAGES:
                return False, f"consumed {got} of {MESSAGES}"
            consumer.commit(asynchronous=False)
            listed = admin.list_consumer_groups(request_timeout=TIMEOUT).result(TIMEOUT)
            ids = [g.group_id for g in listed.valid]
            if group not in ids:
                return False, f"list_consumer_groups: {ids}, errors {listed.errors}"
            description = admin.describe_consumer_groups(
                [group], request_timeout=TIMEOUT)[group].result(TIMEOUT)
            assigned = [(tp.topic, tp.partition) for m in description.members
                        for tp in m.assignment.topic_partitions]
            if (description.state != ConsumerGroupState.STABLE or len(description.members) != 1
                    or assigned != [(plain, 0)]):
                return False, (f"describe_consumer_groups: state {description.state}, "
                               f"{len(description.members)} members, assigned {assigned}")
            offsets = admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)],
                request_timeout=TIMEOUT)[group].result(TIMEOUT)
            committed = {(tp.topic, tp.partition): tp.offset for tp in offsets.topic_partitions}
            if committed != {(plain, 0): MESSAGES}:
                return False, f"list_consumer_group_offsets: {committed}"
        finally:
            consumer.close()
        admin.delete_consumer_groups([group], request_timeout=TIMEOUT)[group].result(TIMEOUT)
        remaining = admin.list_consumer_groups(request_timeout=TIMEOUT).result(TIMEOUT).valid
        ok = group not in [g.group_id for g in remaining]
        return ok, f"stable with 1 member, committed {committed}, deleted {ok}"

    def records():
        partition = TopicPartition(plain, 0)

        def offset(spec):
            return admin.list_offsets({partition: spec},
                                      request_timeout=TIMEOUT)[partition].result(TIMEOUT).offset

        before = (offset(OffsetSpec.earliest()), offset(OffsetSpec.latest()))
        if before != (0, MESSAGES):
            return False, f"earliest/latest {before}"
        deleted = admin.delete_records([TopicPartition(plain, 0, 4)],
                                       request_timeout=TIMEOUT)[partition].result(TIMEOUT)
        after = (offset(OffsetSpec.earliest()), offset(OffsetSpec.latest()))
        ok = deleted.low_watermark == 4 and after == (4, MESSAGES)
        return ok, (f"earliest/latest {before} -> {after}, "
                    f"low watermark {deleted.low_watermark}")

    run_case(name, "admin-topics", topics)
    run_case(name, "admin-configs", configs)
    run_case(name, "admin-groups", groups)
    run_case(name, "admin-records", records)
    if hasattr(admin, "describe_log_dirs"):  # not in confluent-kafka up to 2.16.2 at least
        print(f"{name}: AdminClient.describe_log_dirs exists now: an admin-logdirs case could "
              "be written for it", file=sys.stderr)


# --- kafka-python ----------------------------------------------------------------------


def kafka_python(bootstrap, name):
    import kafka
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType

    v3 = int(kafka.__version__.split(".")[0]) >= 3
    compacted, plain, group = names(name)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT * 1000)

    def topics():
        if v3:
            admin.create_topics({
                compacted: {"num_partitions": 2, "replication_factor": 1,
                            "configs": {"cleanup.policy": "compact", "retention.ms": RETENTION}},
                plain: {"num_partitions": 1, "replication_factor": 1}})
        else:
            from kafka.admin import NewTopic
            response = admin.create_topics([
                NewTopic(compacted, 2, 1, topic_configs={"cleanup.policy": "compact",
                                                          "retention.ms": RETENTION}),
                NewTopic(plain, 1, 1)])
            errors = [e for e in response.topic_errors if e[1] != 0]
            if errors:
                return False, f"create_topics: {errors}"
        listed = admin.list_topics()
        if compacted not in listed or plain not in listed:
            return False, f"list_topics lacks the new topics: {listed}"
        counts = {}
        for topic in admin.describe_topics([compacted, plain]):
            topic_name = topic["name"] if v3 else topic["topic"]
            leaders = {p["leader_id" if v3 else "leader"] for p in topic["partitions"]}
            if topic["error_code"] != 0 or leaders != {0}:
                return False, f"{topic_name}: error {topic['error_code']}, leaders {leaders}"
            counts[topic_name] = len(topic["partitions"])
        return counts == {compacted: 2, plain: 1}, f"partitions {counts}"

    def describe(topic):
        """{topic or broker: {key: (value, source)}} for the topic and broker 0."""
        resources = [ConfigResource(ConfigResourceType.TOPIC, topic),
                     ConfigResource(ConfigResourceType.BROKER, "0")]
        if v3:
            described = admin.describe_configs(resources, config_filter="all")
            return ({k: (c["value"], c["config_source"])
                     for k, c in described["topic"][topic].items()},
                    {k: (c["value"], c["config_source"])
                     for k, c in described["broker"]["0"].items()})
        found = {}
        for response in admin.describe_configs(resources):
            for resource in response.to_object()["resources"]:
                if resource["error_code"] != 0:
                    raise RuntimeError(f"describe_configs: {resource}")
                kind = "topic" if resource["resource_name"] == topic else "broker"
                found[kind] = {e["config_names"]: (e["config_value"], e["config_source"])
                               for e in resource["config_entries"]}
        return found["topic"], found["broker"]

    def configs():
        dynamic_topic = "DYNAMIC_TOPIC_CONFIG" if v3 else 1
        topic_configs, broker_configs = describe(compacted)
        got = {key: topic_configs.get(key) for key in ("cleanup.policy", "retention.ms")}
        if got != {"cleanup.policy": ("compact", dynamic_topic),
                   "retention.ms": (RETENTION, dynamic_topic)}:
            return False, f"topic configs (value, source) {got}"
        if "segment.bytes" not in topic_configs:
            return False, "no segment.bytes among the topic's configs"
        if "log.segment.bytes" not in broker_configs:
            return False, f"no log.segment.bytes among {len(broker_configs)} broker configs"
        if v3:  # IncrementalAlterConfigs: only retention.ms changes
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, compacted,
                                                configs={"retention.ms": RETENTION_ALTERED})])
        else:  # AlterConfigs replaces the topic's whole set of overrides
            response = admin.alter_configs([ConfigResource(
                ConfigResourceType.TOPIC, compacted,
                configs={"cleanup.policy": "compact", "retention.ms": RETENTION_ALTERED})])
            errors = [r for r in response.to_object()["resources"] if r["error_code"] != 0]
            if errors:
                return False, f"alter_configs: {errors}"
        topic_configs, _ = describe(compacted)
        after = {key: topic_configs[key][0] for key in ("cleanup.policy", "retention.ms")}
        ok = after == {"cleanup.policy": "compact", "retention.ms": RETENTION_ALTERED}
        return ok, (f"{len(topic_configs)} topic and {len(broker_configs)} broker configs, "
                    f"after {'incremental ' if v3 else ''}alter {after}")

    def list_group_ids():
        if v3:
            return [g["group_id"] for g in admin.list_groups()]
        return [g[0] for g in admin.list_consumer_groups()]

    def groups():
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        for i in range(MESSAGES):
            producer.send(plain, key=f"key-{i}".encode(), value=f"value-{i}".encode())
        producer.flush(TIMEOUT)
        producer.close()
        consumer = KafkaConsumer(plain, bootstrap_servers=bootstrap, group_id=group,
                                 auto_offset_reset="earliest", enable_auto_commit=False,
                                 consumer_timeout_ms=TIMEOUT * 1000)
        try:
            got = 0
            for _ in consumer:
                got += 1
                if got == MESSAGES:
                    break
            if got < MESSAGES:
                return False, f"consumed {got} of {MESSAGES}"
            consumer.commit()
            ids = list_group_ids()
            if group not in ids:
                return False, f"listed groups {ids}"
            if v3:
                description = admin.describe_groups([group])[group]
                state, members = description["group_state"], description["members"]
                assigned = [(t["topic"], p) for m in members
                            for t in m["member_assignment"]["assigned_partitions"]
                            for p in t["partitions"]]
                offsets = admin.list_group_offsets({group: None})[group]
            else:
                description = admin.describe_consumer_groups([group])[0]
                state, members = description.state, description.members
                assigned = [(t, p) for m in members
                            for t, ps in m.member_assignment.assignment for p in ps]
                offsets = admin.list_consumer_group_offsets(group)
            if state != "Stable" or len(members) != 1 or assigned != [(plain, 0)]:
                return False, (f"describe groups: state {state}, {len(members)} members, "
                               f"assigned {assigned}")
            committed = {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}
            if committed != {(plain, 0): MESSAGES}:
                return False, f"committed offsets {committed}"
        finally:
            consumer.close()
        if v3:
            admin.delete_groups([group])
        else:
            errors = [e for e in admin.delete_consumer_groups([group]) if e[1].errno != 0]
            if errors:
                return False, f"delete_consumer_groups: {errors}"
        ok = group not in list_group_ids()
        return ok, f"stable with 1 member, committed {committed}, deleted {ok}"

    def records():
        partition = TopicPartition(plain, 0)
        consumer = KafkaConsumer(bootstrap_servers=bootstrap)
        try:
            def offsets():
                return (consumer.beginning_offsets([partition])[partition],
                        consumer.end_offsets([partition])[partition])

            before = offsets()
            if before != (0, MESSAGES):
                return False, f"earliest/latest {before}"
            deleted = admin.delete_records({partition: 4})
            low = deleted[partition]["low_watermark"]
            after = offsets()
        finally:
            consumer.close()
        ok = low == 4 and after == (4, MESSAGES)
        return ok, f"earliest/latest {before} -> {after}, low watermark {low}"

    def logdirs():
        if v3:
            dirs = [d for broker in admin.describe_log_dirs() for d in broker["log_dirs"]]
            if any(d.get("total_bytes", 0) <= 0 for d in dirs):  # v4's file system bytes
                return False, f"log dirs without total bytes: {dirs}"
            version = "describe_log_dirs()"
        else:
            # kafka-python 2.x knows only DescribeLogDirs v0, which Kafka 4 dropped (KIP-896)
            # as Strand does; v1 has v0's schema, so it is declared here.
            from kafka.protocol.admin import (DescribeLogDirsRequest_v0,
                                              DescribeLogDirsResponse_v0)

            class DescribeLogDirsResponse_v1(DescribeLogDirsResponse_v0):
                API_VERSION = 1

            class DescribeLogDirsRequest_v1(DescribeLogDirsRequest_v0):
                API_VERSION = 1
                RESPONSE_TYPE = DescribeLogDirsResponse_v1

            dirs = admin.send_request(DescribeLogDirsRequest_v1()).to_object()["log_dirs"]
            version = "v1 (2.x's describe_log_dirs() speaks only v0)"
        sizes = {}
        for log_dir in dirs:
            if log_dir["error_code"] != 0:
                return False, f"log dir {log_dir}"
            for topic in log_dir["topics"]:
                for p in topic["partitions"]:
                    sizes[(topic["name"], p["partition_index"])] = p["partition_size"]
        wanted = {key: size for key, size in sizes.items() if key[0] in (compacted, plain)}
        ok = (len(dirs) == 1 and set(wanted) == {(compacted, 0), (compacted, 1), (plain, 0)}
              and wanted[(plain, 0)] > 0)
        return ok, f"{len(dirs)} log dir, {version}, sizes {wanted}"

    run_case(name, "admin-topics", topics)
    run_case(name, "admin-configs", configs)
    run_case(name, "admin-groups", groups)
    run_case(name, "admin-records", records)
    run_case(name, "admin-logdirs", logdirs)
    admin.close()


CLIENTS = {"confluent-kafka": confluent, "kafka-python": kafka_python}

if __name__ == "__main__":
    client = sys.argv[2]
    CLIENTS[client](sys.argv[1], sys.argv[3] if len(sys.argv) > 3 else client)
