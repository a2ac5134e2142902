"""Compatibility cases for Python clients: produce, consume, and a consumer group that
commits, each against the broker at argv[1]. argv[2] is the client; argv[3] (optional) the
name reported for it, so that two versions of one library can run against one broker
(`kafka-python-2.3`); its topic and group are named after it. Prints one line per case:
`<client> <case> PASS|FAIL [detail]`."""

import asyncio
import sys
import time
import traceback

N = 200
TIMEOUT = 30


def report(client, case, ok, detail=""):
    print(f"{client} {case} {'PASS' if ok else 'FAIL'} {detail}".rstrip(), flush=True)


def expected():
    return [f"value-{i}".encode() for i in range(N)]


def run_case(client, case, body):
    try:
        ok, detail = body()
    except Exception as error:  # a client error is a failed case, not a crash
        ok, detail = False, f"{type(error).__name__}: {error}"
        traceback.print_exc(file=sys.stderr)
    report(client, case, ok, detail)
    return ok


def confluent(bootstrap, name="confluent-kafka"):
    from confluent_kafka import Consumer, Producer, TopicPartition

    # (the group id is not named `group`: the case function below is)
    topic, group_id = "compat-confluent", "compat-confluent-group"

    def produce():
        errors = []
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        for i in range(N):
            producer.produce(topic, key=f"key-{i}", value=f"value-{i}",
                             on_delivery=lambda error, _m: errors.append(error))
        producer.flush(TIMEOUT)
        failed = [e for e in errors if e is not None]
        return len(errors) == N and not failed, f"{len(errors)} delivered, {len(failed)} failed"

    consumer = {}

    def consume():
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id,
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer["c"] = c
        c.subscribe([topic])
        got, deadline = [], time.time() + TIMEOUT
        while len(got) < N and time.time() < deadline:
            message = c.poll(1.0)
            if message is not None and message.error() is None:
                got.append(message.value())
        return got == expected(), f"{len(got)} of {N}"

    def group():
        c = consumer["c"]
        c.commit(asynchronous=False)
        committed = c.committed([TopicPartition(topic, 0)], timeout=TIMEOUT)[0].offset
        c.close()
        return committed == N, f"committed {committed}"

    run_case(name, "produce", produce)
    run_case(name, "consume", consume)
    if "c" in consumer:
        run_case(name, "group", group)
    else:
        report(name, "group", False, "no consumer")


def kafka_python(bootstrap, name="kafka-python"):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic, group_id = f"compat-{name}", f"compat-{name}-group"
    consumer = {}

    def produce():
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        futures = [producer.send(topic, key=f"key-{i}".encode(), value=f"value-{i}".encode())
                   for i in range(N)]
        producer.flush(TIMEOUT)
        offsets = [future.get(timeout=TIMEOUT).offset for future in futures]
        producer.close()
        return offsets == list(range(N)), f"offsets {offsets[:1]}..{offsets[-1:]}"

    def consume():
        c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group_id,
                          auto_offset_reset="earliest", enable_auto_commit=False,
                          consumer_timeout_ms=TIMEOUT * 1000)
        consumer["c"] = c
        got = []
        for message in c:
            got.append(message.value)
            if len(got) == N:
                break
        return got == expected(), f"{len(got)} of {N}"

    def group():
        c = consumer["c"]
        c.commit()
        committed = c.committed(TopicPartition(topic, 0))
        c.close()
        return committed == N, f"committed {committed}"

    run_case(name, "produce", produce)
    run_case(name, "consume", consume)
    if "c" in consumer:
        run_case(name, "group", group)
    else:
        report(name, "group", False, "no consumer")


def aiokafka_client(bootstrap, name="aiokafka"):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    topic, group = "compat-aiokafka", "compat-aiokafka-group"

    async def produce():
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            offsets = []
            for i in range(N):
                metadata = await producer.send_and_wait(topic, key=f"key-{i}".encode(),
                                                        value=f"value-{i}".encode())
                offsets.append(metadata.offset)
        finally:
            await producer.stop()
        return offsets == list(range(N)), f"{len(offsets)} acknowledged"

    async def consume_and_commit():
        c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False)
        await c.start()
        try:
            got = []
            async def read():
                async for message in c:
                    got.append(message.value)
                    if len(got) == N:
                        return
            await asyncio.wait_for(read(), TIMEOUT)
            consumed = (got == expected(), f"{len(got)} of {N}")
            await c.commit()
            committed = await c.committed(TopicPartition(topic, 0))
            return consumed, (committed == N, f"committed {committed}")
        finally:
            await c.stop()

    run_case(name, "produce", lambda: asyncio.run(produce()))
    outcome = {}

    def consume():
        outcome["both"] = asyncio.run(consume_and_commit())
        return outcome["both"][0]

    run_case(name, "consume", consume)
    if "both" in outcome:
        run_case(name, "group", lambda: outcome["both"][1])
    else:
        report(name, "group", False, "no consumer")


CLIENTS = {"confluent-kafka": confluent, "kafka-python": kafka_python, "aiokafka": aiokafka_client}

if __name__ == "__main__":
    client = sys.argv[2]
    CLIENTS[client](sys.argv[1], sys.argv[3] if len(sys.argv) > 3 else client)
