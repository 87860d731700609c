// A kafkajs consumer group of two against the real streamhoused
// (scripts/kafka-clients.sh runs it with KAFKA_ADDR and STREAMHOUSE_DATA):
// subscribe with auto-commit, read everything, then one member is
// restarted (disconnect, a new consumer with the same group) while more
// records arrive. Every record is read; a record is read twice only if
// it came after the restarted member's last commit. The server's view
// (DescribeGroups) must be Stable with both members and every partition
// owned once.
const assert = require('assert')
const fs = require('fs')
const path = require('path')
const { Kafka, logLevel } = require('kafkajs')

const kafka = new Kafka({ clientId: 'kjs-group', brokers: [process.env.KAFKA_ADDR], logLevel: logLevel.NOTHING })
const TOPIC = 'kjs-grp'
const GROUP = 'kjs-group'
const PARTITIONS = 4
const lines = fs.readFileSync(path.join(process.env.STREAMHOUSE_DATA, 'movies.jsonl'), 'utf8')
  .split('\n').filter(l => l.length > 0)

const reads = new Map() // "p/o" -> number of reads
const readBy = new Map() // member name -> ["p/o", ...] in order
const committedBy = new Map() // member name -> Map(partition -> committed offset)

async function member(name) {
  // kafkajs heartbeats between fetches: its default fetch wait (5 s) would
  // be most of a rebalance's time.
  const c = kafka.consumer({ groupId: GROUP, sessionTimeout: 6000, heartbeatInterval: 500, maxWaitTimeInMs: 1000 })
  readBy.set(name, [])
  committedBy.set(name, new Map())
  c.on(c.events.COMMIT_OFFSETS, e => {
    for (const t of e.payload.topics) {
      for (const p of t.partitions) committedBy.get(name).set(p.partition, BigInt(p.offset))
    }
  })
  await c.connect()
  await c.subscribe({ topic: TOPIC, fromBeginning: true })
  await c.run({
    autoCommitInterval: 500,
    eachMessage: async ({ partition, message }) => {
      const k = `${partition}/${message.offset}`
      reads.set(k, (reads.get(k) || 0) + 1)
      readBy.get(name).push(k)
    },
  })
  return c
}

async function produce(producer, from, n) {
  const messages = []
  for (let i = from; i < from + n; i++) messages.push({ key: String(i), value: lines[i % lines.length] })
  for (let i = 0; i < messages.length; i += 500) {
    await producer.send({ topic: TOPIC, acks: -1, messages: messages.slice(i, i + 500) })
  }
}

async function waitFor(what, cond, ms = 30000) {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await cond()) return
    await new Promise(r => setTimeout(r, 100))
  }
  throw new Error(`timed out waiting for ${what}`)
}

async function highWatermarks(admin) {
  const offs = await admin.fetchTopicOffsets(TOPIC)
  return offs.map(o => [o.partition, BigInt(o.high)])
}

function allRead(hw) {
  return hw.every(([p, high]) => {
    for (let o = 0n; o < high; o++) if (!reads.has(`${p}/${o}`)) return false
    return true
  })
}

async function stableWithTwo(admin) {
  const { groups } = await admin.describeGroups([GROUP])
  const g = groups[0]
  if (g.state !== 'Stable' || g.members.length !== 2) return false
  const { AssignerProtocol } = require('kafkajs')
  const owned = g.members.flatMap(m => AssignerProtocol.MemberAssignment.decode(m.memberAssignment).assignment[TOPIC] || [])
  return owned.length === PARTITIONS && new Set(owned).size === PARTITIONS
}

async function main() {
  const admin = kafka.admin()
  await admin.connect()
  await admin.createTopics({ topics: [{ topic: TOPIC, numPartitions: PARTITIONS }] })
  const producer = kafka.producer()
  await producer.connect()
  await produce(producer, 0, 2000)
  const a = await member('a')
  const b = await member('b')
  await waitFor('the group to be stable with two members', () => stableWithTwo(admin))
  let hw = await highWatermarks(admin)
  await waitFor('the first 2,000 records to be read', () => allRead(hw))

  // b restarts while records keep coming.
  const more = produce(producer, 2000, 2000)
  await b.disconnect()
  const bCommitted = committedBy.get('b')
  const bReads = readBy.get('b')
  const t = Date.now()
  const b2 = await member('b2')
  await more
  await waitFor('the group to be stable again', () => stableWithTwo(admin))
  const rejoin = (Date.now() - t) / 1000
  hw = await highWatermarks(admin)
  await waitFor('all 4,000 records to be read', () => allRead(hw))
  const total = [...reads.values()].reduce((x, y) => x + y, 0)
  const dups = [...reads.entries()].filter(([, n]) => n > 1).map(([k]) => k)
  // A record read twice must be one b read past its last commit.
  for (const k of dups) {
    const [p, o] = k.split('/').map(BigInt)
    const committed = bCommitted.get(Number(p))
    assert.ok(bReads.includes(k) && (committed === undefined || o >= committed),
      `${k} read again though b committed past it (${committed})`)
  }
  console.log(`PASS kafkajs group of two, auto-commit, one member restarted: stable again in ${rejoin.toFixed(2)} s; ` +
    `4000 records, ${total} reads, ${dups.length} read twice (all after b's last commit)`)
  await Promise.all([a.disconnect(), b2.disconnect(), producer.disconnect()])
  await admin.deleteTopics({ topics: [TOPIC] })
  await admin.disconnect()
}

main().catch(e => { console.error(e); process.exit(1) })
