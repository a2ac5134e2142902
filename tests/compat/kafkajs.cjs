// Compatibility cases for kafkajs: produce, consume, and a consumer group that commits.
// Prints one line per case: `kafkajs <case> PASS|FAIL [detail]`.
const { Kafka, logLevel } = require('kafkajs');

const N = 200;
const TIMEOUT_MS = 30000;
const bootstrap = process.argv[2];
const topic = 'compat-kafkajs';
const groupId = 'compat-kafkajs-group';

function report(name, ok, detail = '') {
  console.log(`kafkajs ${name} ${ok ? 'PASS' : 'FAIL'} ${detail}`.trimEnd());
}

async function main() {
  const kafka = new Kafka({ clientId: 'compat', brokers: [bootstrap], logLevel: logLevel.ERROR });
  try {
    const producer = kafka.producer({ allowAutoTopicCreation: true });
    await producer.connect();
    const messages = [...Array(N).keys()].map((i) => ({ key: `key-${i}`, value: `value-${i}` }));
    const sent = await producer.send({ topic, messages, acks: -1 });
    await producer.disconnect();
    report('produce', sent.length > 0 && sent.every((r) => r.errorCode === 0), `${sent.length} partition answers`);
  } catch (error) {
    report('produce', false, String(error));
  }
  const got = [];
  try {
    const consumer = kafka.consumer({ groupId });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${got.length} of ${N}`)), TIMEOUT_MS);
      consumer.run({
        autoCommit: true,
        eachMessage: async ({ message }) => {
          got.push(message.value.toString());
          if (got.length === N) {
            clearTimeout(timer);
            resolve();
          }
        },
      });
    });
    await consumer.disconnect();
    const inOrder = got.every((value, i) => value === `value-${i}`);
    report('consume', got.length === N && inOrder, `${got.length} of ${N}`);
  } catch (error) {
    report('consume', false, String(error));
  }
  try {
    const admin = kafka.admin();
    await admin.connect();
    const offsets = await admin.fetchOffsets({ groupId, topics: [topic] });
    await admin.disconnect();
    const committed = offsets[0].partitions.find((p) => p.partition === 0).offset;
    report('group', committed === String(N), `committed ${committed}`);
  } catch (error) {
    report('group', false, String(error));
  }
}

main().then(() => process.exit(0), (error) => {
  console.error(error);
  process.exit(1);
});
