/**
 * The conformance suite, in two lanes:
 *
 * - a real MongoDB replica set (BATON_TEST_MONGO_URL, the local default, or a
 *   testcontainers container): every case, every capability;
 * - the jongodb emulator, started and stopped here: the sequential cases. It
 *   loses concurrent updates and has no change streams, so the cases that
 *   need concurrent writers or a live feed are skipped, with the reason in
 *   their names; no assertion is weakened.
 */
import { locateService, requiredServices, runAdapterConformance } from "@baton/adapter-conformance"
import { mongoStorage } from "@baton/adapter-mongo"
import { MongoClient } from "mongodb"
import { afterAll, beforeEach, it } from "vitest"
import { type Emulator, emulatorBinary, startEmulator } from "./Emulator.js"
import { dropDatabase, emptyCollections, freshDatabase, mongoBackdoor } from "./support.js"

const replicaSet = await locateService("mongo", {
  log: (message) => console.warn(`${message}\n(The emulator lane below still runs.)`)
})
afterAll(async () => {
  await replicaSet?.stop()
})

if (replicaSet === null)
  it.skip("mongo conformance on a replica set (all capabilities): no MongoDB found (set BATON_TEST_MONGO_URL)", () => {})
else {
  const url = replicaSet.url
  runAdapterConformance("mongo (replica set)", async () => {
    const database = freshDatabase()
    const raw = new MongoClient(url)
    return {
      adapter: mongoStorage({ url, database }),
      backdoor: mongoBackdoor(raw.db(database)),
      close: async () => {
        await dropDatabase(raw.db(database))
        await raw.close()
      }
    }
  })
}

if (emulatorBinary() === null) {
  // CI can insist on this lane: BATON_TEST_REQUIRE=…,mongo-emulator turns the skip into a failure.
  if (requiredServices().has("mongo-emulator"))
    throw new Error(
      "BATON_TEST_REQUIRE names mongo-emulator, but its binary is not installed for this platform."
    )
  it.skip("mongo conformance on the jongodb emulator: its binary is not installed for this platform", () => {})
} else {
  let emulator: Emulator | null = null
  let emptyDatabase: (() => Promise<void>) | null = null
  afterAll(async () => {
    await emulator?.stop()
  })
  // The emulator's writes slow down with the size of the collection they touch (about 50 ms per
  // transaction at 500 documents, 300 ms at 1,500): each case starts from empty collections so
  // the worker cases' 1 s leases stay meaningful. Cases share nothing: each has its own customer
  // and handler names.
  beforeEach(async () => {
    await emptyDatabase?.()
  })
  runAdapterConformance(
    "mongo (jongodb emulator)",
    async () => {
      emulator = await startEmulator()
      const url = emulator.url
      const database = freshDatabase()
      const raw = new MongoClient(url)
      emptyDatabase = () => emptyCollections(raw.db(database))
      return {
        // One write at a time, as on a single-connection store: the emulator loses overlapping ones.
        adapter: mongoStorage({ url, database, serializeWrites: true }),
        backdoor: mongoBackdoor(raw.db(database)),
        close: async () => {
          await dropDatabase(raw.db(database))
          await raw.close()
          await emulator?.stop()
        }
      }
    },
    // The emulator loses concurrent updates and has no change streams: the adapter polls there.
    { capabilities: { concurrentWriters: false, liveFeed: false } }
  )
}
