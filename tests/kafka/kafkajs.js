// kafkajs against the real streamhoused (scripts/kafka-clients.sh runs it
// with KAFKA_ADDR set): admin create/list/delete, a producer with acks=-1,
// and reads through Fetch on partitions picked by the reader (kafkajs has
// no assign(): its cluster's broker.fetch is the assign-style path; group
// consumers come with consumer-group support).
const assert = require('assert')
const { Kafka, logLevel } = require('kafkajs')

const kafka = new Kafka({ clientId: 'sh-test', brokers: [process.env.KAFKA_ADDR], logLevel: logLevel.WARN })

function privateCluster() {
  const sym = Object.getOwnPropertySymbols(kafka).find(s => String(s).includes('createCluster'))
  return kafka[sym]({ metadataMaxAge: 1000 })
}

async function fetchAll(topic, partitions, expected) {
  const cluster = privateCluster()
  await cluster.connect()
  await cluster.addTargetTopic(topic)
  const got = []
  const next = {}
  for (const p of partitions) next[p] = '0'
  const deadline = Date.now() + 30000
  while (got.length < expected && Date.now() < deadline) {
    const leaders = cluster.findLeaderForPartitions(topic, partitions)
    for (const nodeId of Object.keys(leaders)) {
      const broker = await cluster.findBroker({ nodeId })
      const resp = await broker.fetch({
        maxWaitTime: 200,
        topics: [{ topic, partitions: leaders[nodeId].map(p => ({ partition: p, fetchOffset: next[p], maxBytes: 1 << 20 })) }],
      })
      for (const t of resp.responses) {
        for (const part of t.partitions) {
          assert.strictEqual(part.errorCode, 0)
          for (const m of part.messages) {
            got.push({ partition: part.partition, ...m })
            next[part.partition] = (BigInt(m.offset) + 1n).toString()
          }
        }
      }
    }
  }
  await cluster.disconnect()
  assert.strictEqual(got.length, expected, `read ${got.length} of ${expected}`)
  return got
}

async function main() {
  const admin = kafka.admin()
  await admin.connect()
  const topic = 'kafkajs-t'
  assert.strictEqual(await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true }), true)
  assert.ok((await admin.listTopics()).includes(topic))
  console.log('PASS kafkajs admin: create (2 partitions) and list')

  const producer = kafka.producer({ allowAutoTopicCreation: false })
  await producer.connect()
  const messages = []
  for (let i = 0; i < 500; i++) {
    messages.push({
      key: `k${i}`,
      value: JSON.stringify({ i, title: `movie ${i}` }),
      partition: i % 2,
      headers: { seq: `${i}`, dup: ['a', 'b'] },
      timestamp: `${1600000000000 + i}`,
    })
  }
  await producer.send({ topic, acks: -1, messages })
  await producer.disconnect()

  const offsets = await admin.fetchTopicOffsets(topic)
  const high = offsets.map(o => Number(o.high)).sort()
  assert.deepStrictEqual(high, [250, 250])

  const got = await fetchAll(topic, [0, 1], 500)
  for (const p of [0, 1]) {
    const mine = got.filter(m => m.partition === p)
    mine.forEach((m, n) => {
      const i = 2 * n + p
      assert.strictEqual(m.offset, `${n}`)
      assert.strictEqual(m.key.toString(), `k${i}`)
      assert.strictEqual(m.value.toString(), JSON.stringify({ i, title: `movie ${i}` }))
      assert.strictEqual(m.timestamp, `${1600000000000 + i}`)
      assert.strictEqual(m.headers.seq.toString(), `${i}`)
      assert.deepStrictEqual(m.headers.dup.map(String), ['a', 'b'])
    })
  }
  console.log('PASS kafkajs produce acks=-1 and fetch: 500 records, keys, headers, timestamps')

  await admin.deleteTopics({ topics: [topic] })
  assert.ok(!(await admin.listTopics()).includes(topic))
  await admin.disconnect()
  console.log('PASS kafkajs admin: delete')
}

main().catch(e => {
  console.error('FAIL', e)
  process.exit(1)
})
