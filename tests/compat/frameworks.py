"""Compatibility cases for stream-processing frameworks whose state lives in a compacted
changelog topic: quixstreams (State, changelog `changelog__GROUP--TOPIC--default`) and
faust-streaming (a Table, changelog `APP-TABLE-changelog`). `frameworks.py BOOTSTRAP
quixstreams|faust` prints one line: `quixstreams stateful-restart PASS|FAIL detail` or
`faust table-restart PASS|FAIL detail`.

Each case is the same story. The input is KEYS keys spread over two partitions, each key
with PER_KEY messages {"seq": 0, 1, ..} in order. The app keeps, per key, `next` (the next
seq it expects), `count` and `sum` of what it applied: a message with seq < next is a
duplicate (at-least-once redelivery after the restart) and is skipped; seq > next is a gap
(a lost update: state behind the consumer's position) and is recorded as an error.

1. A worker (a subprocess with a fresh state directory) processes part of the input,
   then stops gracefully (quixstreams: app.stop(); faust: SIGTERM to itself). Meanwhile
   the changelog, made beforehand with a small segment.bytes, is compacted by the broker's
   cleaner (the broker runs with housekeeping_interval_ms = 500): the case checks that it
   holds fewer records than offsets, so recovery reads a compacted log.
2. Its state directory is deleted, and a second worker must recover the state from the
   changelog. The state it sees for each key before its first new message must equal
   what the first worker had when it stopped, and must not be behind what the group's
   committed input offsets imply; then it finishes the stream: every key must end at
   next == count == PER_KEY, sum == the expected sum, with no gap.

Duplicates cannot hide a wrong answer: they are skipped by seq, not counted twice, and a
recovered state that is behind the committed input shows up as a gap."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

from python_clients import report

KEYS = 6
PER_KEY = 50
PARTITIONS = 2
# The input comes in two waves: seqs below WAVE before the first worker, the rest before
# the second. The first worker stops once every key has reached STOP_AT, in the middle of
# the first wave: what it had not read yet is the second worker's, and the second wave
# gives every key new messages after the restart.
WAVE = 30
STOP_AT = 20
PHASE_TIMEOUT = 45
SEGMENT_BYTES = "4096"  # the changelog rolls often, so the cleaner has work


def key_name(k):
    return f"k{k}"


def value_of(k, seq):
    return k * 1000 + seq  # what `sum` adds up


def expected_state(k, upto):
    """The state of key k once seqs 0..upto-1 are applied."""
    return {"next": upto, "count": upto, "sum": sum(value_of(k, s) for s in range(upto))}


def create_topics(bootstrap, topics):
    """topics: {name: (partitions, {config})}; waits until all exist."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=n, replication_factor=1, config=config)
         for name, (n, config) in topics.items()], operation_timeout=30, request_timeout=30)
    for future in futures.values():
        future.result(30)


def produce_input(bootstrap, topic, seqs):
    """Every key's messages with these seqs in order, key k on partition k % PARTITIONS."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    errors = []
    for seq in seqs:
        for k in range(KEYS):
            producer.produce(topic, key=key_name(k), partition=k % PARTITIONS,
                             value=json.dumps({"k": k, "seq": seq}),
                             on_delivery=lambda error, _m: errors.append(error))
    producer.flush(30)
    failed = [e for e in errors if e is not None]
    if len(errors) != KEYS * len(seqs) or failed:
        raise RuntimeError(f"producing the input: {len(errors)} delivered, failed {failed[:3]}")


def committed_offsets(bootstrap, group, topic):
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    result = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p)
                                              for p in range(PARTITIONS)])],
        request_timeout=30)[group].result(30)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def implied_by(committed):
    """The state of each key that the committed input offsets imply: a partition holds its
    keys' messages round robin in seq order, so offset o of partition p is key
    keys[o % len(keys)] at seq o // len(keys). State recovered behind it lost updates."""
    implied = {}
    for p, offset in committed.items():
        keys = [k for k in range(KEYS) if k % PARTITIONS == p]
        for i, k in enumerate(keys):
            if offset >= 0:
                upto = offset // len(keys) + (1 if i < offset % len(keys) else 0)
                implied[key_name(k)] = expected_state(k, upto)
    return implied


def changelog_summary(bootstrap, topic):
    """(records read, offsets spanned, cleanup.policy) of a changelog topic: fewer records
    than offsets means the cleaner compacted it."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, topic)
    policy = admin.describe_configs([resource])[resource].result(30)["cleanup.policy"].value
    partitions = len(admin.list_topics(topic, timeout=30).topics[topic].partitions)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"inspect-{uuid.uuid4()}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    records, spanned = 0, 0
    try:
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            spanned += high - low
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, p, low)])
            deadline = time.time() + 20
            while time.time() < deadline:
                message = consumer.poll(1.0)
                if message is None:
                    continue
                if message.error() is not None:
                    if message.error().code() == message.error()._PARTITION_EOF:
                        break
                    raise RuntimeError(f"reading {topic}: {message.error()}")
                records += 1
                if message.offset() >= high - 1:
                    break
    finally:
        consumer.close()
    return records, spanned, policy


def run_phase(args, result_file):
    """Runs one worker as a subprocess; returns what it wrote to result_file."""
    command = [sys.executable, os.path.abspath(__file__), *args, result_file]
    try:
        done = subprocess.run(command, timeout=PHASE_TIMEOUT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        output = done.stdout
    except subprocess.TimeoutExpired as timed_out:
        output = (timed_out.stdout or b"").decode(errors="replace") \
            if isinstance(timed_out.stdout, bytes) else (timed_out.stdout or "")
        output += f"\n(worker killed after {PHASE_TIMEOUT} s)"
    sys.stderr.write(f"--- worker {args[0]} {args[-1]}\n{output[-6000:]}\n")
    try:
        with open(result_file) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class Tracker:
    """The worker's record of what it saw: the state of each key before its first message
    (`recovered`), the state after its latest (`final`), duplicates and gaps. Written to a
    JSON file after every message, so a worker that is stopped leaves it behind."""

    def __init__(self, result_file, stop_when):
        self.result_file = result_file
        self.stop_when = stop_when
        self.data = {"processed": 0, "duplicates": 0, "gaps": [], "recovered": {},
                     "final": {}, "stopping": False}

    def apply(self, state_get, state_set, key, value):
        """One message against the key's state (get/set of a dict); returns whether the
        worker should now stop."""
        before = {"next": state_get("next"), "count": state_get("count"),
                  "sum": state_get("sum")}
        self.data["recovered"].setdefault(key, before)
        seq = value["seq"]
        if seq < before["next"]:
            self.data["duplicates"] += 1
        elif seq > before["next"]:
            self.data["gaps"].append([key, before["next"], seq])
        else:
            after = {"next": seq + 1, "count": before["count"] + 1,
                     "sum": before["sum"] + value_of(value["k"], seq)}
            for field, v in after.items():
                state_set(field, v)
            self.data["final"][key] = after
        if key not in self.data["final"]:
            self.data["final"][key] = before
        self.data["processed"] += 1
        stop = self.stop_when(self.data)
        if stop:
            self.data["stopping"] = True
        self.save()
        return stop

    def save(self):
        with open(self.result_file + ".tmp", "w") as f:
            json.dump(self.data, f)
        os.replace(self.result_file + ".tmp", self.result_file)


def stop_rule(phase):
    if phase == "first":
        return lambda data: (len(data["final"]) == KEYS
                             and all(s["next"] >= STOP_AT for s in data["final"].values()))
    return lambda data: (len(data["final"]) == KEYS
                         and all(s["next"] >= PER_KEY for s in data["final"].values()))


def judge(first, second, offsets_state):
    """Compares the two workers' records; returns (ok, detail)."""
    if first is None or second is None:
        return False, f"a worker left no result (first {first is not None}, " \
                      f"second {second is not None})"
    problems = []
    gaps = first["gaps"] + second["gaps"]
    if gaps:
        problems.append(f"{len(gaps)} gaps, the first (key, expected seq, got) {gaps[:3]}")
    for key, stopped in first["final"].items():
        recovered = second["recovered"].get(key)
        if recovered != stopped:
            problems.append(f"{key}: recovered {recovered}, the first worker stopped at "
                            f"{stopped}")
    for key, implied in offsets_state.items():
        recovered = second["recovered"].get(key)
        if recovered is not None and recovered["next"] < implied["next"]:
            problems.append(f"{key}: recovered {recovered} is behind the committed input "
                            f"offsets, which imply {implied}")
    for k in range(KEYS):
        want = expected_state(k, PER_KEY)
        got = second["final"].get(key_name(k))
        if got != want:
            problems.append(f"{key_name(k)}: final {got}, expected {want}")
    recovered_any = any(s["next"] > 0 for s in second["recovered"].values())
    if not recovered_any:
        problems.append("the second worker recovered no state at all")
    detail = (f"first worker {first['processed']} msgs, second {second['processed']} msgs "
              f"({second['duplicates']} duplicates skipped); recovered "
              f"{sum(s['next'] for s in second['recovered'].values())} applied seqs")
    if problems:
        return False, detail + "; " + "; ".join(problems[:4])
    return True, detail


# --- quixstreams -----------------------------------------------------------------------


def quix_worker(bootstrap, group, topic, state_dir, phase, result_file):
    from quixstreams import Application

    app = Application(broker_address=bootstrap, consumer_group=group,
                      auto_offset_reset="earliest", state_dir=state_dir,
                      processing_guarantee="at-least-once", commit_every=10,
                      commit_interval=0.5, loglevel="WARNING")
    tracker = Tracker(result_file, stop_rule(phase))

    def apply(value, key, _timestamp, _headers, state):
        stop = tracker.apply(lambda field: state.get(field, 0), state.set, key.decode(), value)
        if stop:
            app.stop()

    sdf = app.dataframe(app.topic(topic, value_deserializer="json"))
    sdf.update(apply, stateful=True, metadata=True)
    tracker.save()
    app.run()


def quixstreams_case(bootstrap):
    run_id = uuid.uuid4().hex[:8]
    topic, group = f"fw-quix-input-{run_id}", f"fw-quix-{run_id}"
    changelog = f"changelog__{group}--{topic}--default"
    # The changelog is made here, before the app (which then finds and keeps it), so that
    # it rolls small segments; quixstreams itself would make it compacted as well.
    create_topics(bootstrap, {
        topic: (PARTITIONS, {}),
        changelog: (PARTITIONS, {"cleanup.policy": "compact", "segment.bytes": SEGMENT_BYTES,
                                 "min.cleanable.dirty.ratio": "0.01"})})
    produce_input(bootstrap, topic, range(WAVE))
    with tempfile.TemporaryDirectory() as scratch:
        first = run_phase(["quix-worker", bootstrap, group, topic,
                           os.path.join(scratch, "state"), "first"],
                          os.path.join(scratch, "first.json"))
        produce_input(bootstrap, topic, range(WAVE, PER_KEY))
        committed = committed_offsets(bootstrap, group, topic)
        time.sleep(2)  # a few housekeeping ticks: the cleaner compacts the changelog
        records, spanned, policy = changelog_summary(bootstrap, changelog)
        # Without its state directory the state can only come from the changelog.
        shutil.rmtree(os.path.join(scratch, "state"), ignore_errors=True)
        second = run_phase(["quix-worker", bootstrap, group, topic,
                            os.path.join(scratch, "state"), "second"],
                           os.path.join(scratch, "second.json"))
    return verdict(judge(first, second, implied_by(committed)), policy, records, spanned,
                   committed)


def verdict(judged, policy, records, spanned, committed):
    """The judgement of the two workers, and the changelog: compacted by policy and in fact
    (fewer records than offsets by the time the second worker recovers from it)."""
    ok, detail = judged
    detail += (f"; committed {committed}; changelog {records} records over {spanned} "
               f"offsets before the restart")
    if policy != "compact":
        ok, detail = False, detail + f"; changelog cleanup.policy {policy}"
    elif records >= spanned:
        ok, detail = False, detail + "; the cleaner did not compact the changelog"
    return ok, detail


# --- faust-streaming ---------------------------------------------------------------------


def faust_worker(bootstrap, app_id, topic, data_dir, phase, result_file):
    import asyncio
    import signal

    import faust
    from faust import Worker

    app = faust.App(app_id, broker=f"kafka://{bootstrap}", store="memory://",
                    datadir=data_dir, web_enabled=False, topic_partitions=PARTITIONS,
                    topic_replication_factor=1, processing_guarantee="at_least_once",
                    consumer_auto_offset_reset="earliest", broker_commit_every=10,
                    broker_commit_interval=0.5, table_standby_replicas=0,
                    stream_wait_empty=False)
    source = app.topic(topic, key_serializer="raw", value_serializer="json")
    # In memory: a restarted worker has nothing but the changelog to recover from.
    table = app.Table("state", default=None, partitions=PARTITIONS)
    tracker = Tracker(result_file, stop_rule(phase))

    @app.agent(source)
    async def process(stream):
        async for key, value in stream.items():
            name = key.decode()
            current = dict(table.get(name) or {})
            stop = tracker.apply(lambda field: current.get(field, 0), current.__setitem__,
                                 name, value)
            table[name] = current
            if stop:
                # A graceful stop, as on SIGTERM: the worker flushes and commits what it
                # acknowledged. The agent takes no further event (faust would acknowledge
                # it, and so commit past it, even unprocessed).
                os.kill(os.getpid(), signal.SIGTERM)
                await asyncio.sleep(3600)

    tracker.save()
    Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


def faust_case(bootstrap):
    run_id = uuid.uuid4().hex[:8]
    app_id, topic = f"fw-faust-{run_id}", f"fw-faust-input-{run_id}"
    changelog = f"{app_id}-state-changelog"
    # Made here with small segments (faust would make it compacted too, and keeps it).
    create_topics(bootstrap, {
        topic: (PARTITIONS, {}),
        changelog: (PARTITIONS, {"cleanup.policy": "compact", "segment.bytes": SEGMENT_BYTES,
                                 "min.cleanable.dirty.ratio": "0.01"})})
    produce_input(bootstrap, topic, range(WAVE))
    with tempfile.TemporaryDirectory() as scratch:
        first = run_phase(["faust-worker", bootstrap, app_id, topic,
                           os.path.join(scratch, "data"), "first"],
                          os.path.join(scratch, "first.json"))
        produce_input(bootstrap, topic, range(WAVE, PER_KEY))
        committed = committed_offsets(bootstrap, app_id, topic)
        time.sleep(2)  # a few housekeeping ticks: the cleaner compacts the changelog
        records, spanned, policy = changelog_summary(bootstrap, changelog)
        shutil.rmtree(os.path.join(scratch, "data"), ignore_errors=True)
        second = run_phase(["faust-worker", bootstrap, app_id, topic,
                            os.path.join(scratch, "data"), "second"],
                           os.path.join(scratch, "second.json"))
    return verdict(judge(first, second, implied_by(committed)), policy, records, spanned,
                   committed)


CASES = {"quixstreams": ("stateful-restart", quixstreams_case),
         "faust": ("table-restart", faust_case)}
WORKERS = {"quix-worker": quix_worker, "faust-worker": faust_worker}

if __name__ == "__main__":
    if sys.argv[1] in WORKERS:
        WORKERS[sys.argv[1]](*sys.argv[2:])
    else:
        framework = sys.argv[2]
        case, body = CASES[framework]
        try:
            ok, detail = body(sys.argv[1])
        except Exception as error:
            ok, detail = False, f"{type(error).__name__}: {error}"
            traceback.print_exc(file=sys.stderr)
        report(framework, case, ok, detail)
