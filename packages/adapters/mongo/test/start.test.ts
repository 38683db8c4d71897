/**
 * Starting the adapter against the emulator: indexes created idempotently,
 * a standalone server and an unreachable or malformed URL refused with a
 * clear, safe message, the feed chosen by what the server supports.
 */
import {
  COLLECTION_NAMES,
  DEFAULT_POLL_INTERVAL_MS,
  databaseInUrl,
  INDEXES,
  MALFORMED_URL_MESSAGE,
  mongoStorage,
  STANDALONE_MESSAGE
} from "@baton/adapter-mongo"
import {
  Engine,
  type StorageAdapter,
  type StorageError,
  StorageError as StorageErrorClass
} from "@baton/core"
import { Effect, Exit, Layer } from "effect"
import { MongoClient } from "mongodb"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { collectionsOf } from "../src/Collections.js"
import { detectChangeStreams } from "../src/MongoEventFeed.js"
import { type Emulator, emulatorBinary, startEmulator } from "./Emulator.js"
import { dropDatabase, freshDatabase } from "./support.js"

/** Builds the adapter's layer and closes it again; the start's failure, if any. */
const startFailure = async (adapter: StorageAdapter): Promise<StorageError | null> => {
  const exit = await Effect.runPromiseExit(Effect.scoped(Layer.build(adapter.layer)))
  if (Exit.isSuccess(exit)) return null
  const failure = exit.cause._tag === "Fail" ? exit.cause.error : null
  if (!(failure instanceof StorageErrorClass))
    throw new Error(`expected a StorageError, got ${String(exit.cause)}`)
  return failure
}

describe("mongoStorage options", () => {
  it("takes the database from the option, else the URL's path, else baton", () => {
    expect(databaseInUrl("mongodb://h:1/app?replicaSet=rs0")).toBe("app")
    expect(databaseInUrl("mongodb://user:p%2Fw@h1:1,h2:2/app")).toBe("app")
    expect(databaseInUrl("mongodb://h:1/?replicaSet=rs0")).toBeNull()
    expect(databaseInUrl("mongodb://h:1")).toBeNull()
    expect(databaseInUrl("mongodb+srv://u:p@cluster.example.net/")).toBeNull()
  })

  it("refuses a bad database name or poll interval when it is built, not at the first request", () => {
    expect(() => mongoStorage({ url: "mongodb://h/", database: "a.b" })).toThrow(/database must be/)
    expect(() => mongoStorage({ url: "mongodb://h/", database: "" })).toThrow(/database must be/)
    expect(() => mongoStorage({ url: "mongodb://h/", pollIntervalMs: 0 })).toThrow(/pollIntervalMs/)
    expect(() => mongoStorage({ url: "mongodb://h/", pollIntervalMs: 600_000 })).toThrow(/pollIntervalMs/)
    expect(DEFAULT_POLL_INTERVAL_MS).toBe(250)
  })

  it("fails a start against an address where nothing answers, with a message naming no host or password", async () => {
    const failure = await startFailure(
      mongoStorage({
        url: "mongodb://baton:s3cret-pw@127.0.0.1:9/?replicaSet=rs0",
        serverSelectionTimeoutMs: 200
      })
    )
    expect(failure?.reason_code).toBe("STORAGE_UNAVAILABLE")
    expect(failure?.message).toMatch(/could not be reached/)
    expect(failure?.message).not.toMatch(/s3cret|baton:|127\.0\.0\.1/)
  })

  it("fails a start on a malformed URL without echoing it", async () => {
    const failure = await startFailure(mongoStorage({ url: "mongodb://u:s3cret@/x?nonsense=%%" }))
    expect(failure?.message).toBe(MALFORMED_URL_MESSAGE)
    const unknownOption = await startFailure(mongoStorage({ url: "mongodb://u:s3cret@h/?noSuchOption=1" }))
    expect(unknownOption?.message).toBe(MALFORMED_URL_MESSAGE)
  })
})

const binary = emulatorBinary()

describe.skipIf(binary === null)(
  `against the jongodb emulator${binary === null ? " [skipped: its binary is not installed for this platform]" : ""}`,
  () => {
    let replicaSet: Emulator
    let standalone: Emulator
    let raw: MongoClient
    const databases: string[] = []
    const database = () => {
      const name = freshDatabase()
      databases.push(name)
      return name
    }

    beforeAll(async () => {
      replicaSet = await startEmulator("replicaset")
      standalone = await startEmulator("standalone")
      raw = new MongoClient(replicaSet.url)
    })
    afterAll(async () => {
      for (const name of databases) await dropDatabase(raw.db(name))
      await raw?.close()
      await replicaSet?.stop()
      await standalone?.stop()
    })

    it("creates its indexes at start, and a second start over them changes nothing", async () => {
      const name = database()
      expect(await startFailure(mongoStorage({ url: replicaSet.url, database: name }))).toBeNull()
      const indexes = async () => {
        const out: Record<string, unknown> = {}
        for (const [key, collection] of Object.entries(COLLECTION_NAMES))
          out[key] = (await raw.db(name).collection(collection).indexes())
            .map(({ name, key, unique, expireAfterSeconds }) => ({ name, key, unique, expireAfterSeconds }))
            .sort((a, b) => String(a.name).localeCompare(String(b.name)))
        return out
      }
      const first = await indexes()
      for (const [key, specs] of Object.entries(INDEXES)) {
        const names = (first[key] as Array<{ name: string }>).map((i) => i.name)
        for (const spec of specs) expect(names).toContain(spec.name)
      }
      expect(first.events).toContainEqual(
        expect.objectContaining({ name: "events_run_seq", key: { run_id: 1, seq: 1 }, unique: true })
      )
      expect(first.idempotency).toContainEqual(
        expect.objectContaining({ name: "idempotency_customer_key", unique: true })
      )
      expect(first.idempotency).toContainEqual(
        expect.objectContaining({ name: "idempotency_ttl", key: { expires_at: 1 }, expireAfterSeconds: 0 })
      )
      expect(await startFailure(mongoStorage({ url: replicaSet.url, database: name }))).toBeNull()
      expect(await indexes()).toEqual(first)
    })

    it("refuses a standalone server at start, saying a replica set is needed", async () => {
      const failure = await startFailure(mongoStorage({ url: standalone.url, database: database() }))
      expect(failure?.message).toBe(STANDALONE_MESSAGE)
    })

    it("refuses feed changeStream where the server has none, and polls with auto", async () => {
      const name = database()
      const failure = await startFailure(
        mongoStorage({ url: replicaSet.url, database: name, feed: "changeStream" })
      )
      expect(failure?.message).toMatch(/does not run change streams/)
      expect(await detectChangeStreams(collectionsOf(raw.db(name)))).toBe(false)
      expect(
        await startFailure(mongoStorage({ url: replicaSet.url, database: name, feed: "auto" }))
      ).toBeNull()
    })

    it("works on a client the caller opened, and leaves it open", async () => {
      const client = new MongoClient(replicaSet.url)
      try {
        const adapter = mongoStorage({ client, database: database() })
        await Effect.runPromise(
          Effect.scoped(
            Effect.gen(function* () {
              const context = yield* Layer.build(adapter.layer)
              yield* Effect.provide(Engine.ping, context)
            })
          )
        )
        // Still usable: the adapter did not close it.
        expect(await client.db("admin").command({ ping: 1 })).toMatchObject({ ok: 1 })
      } finally {
        await client.close()
      }
    })
  }
)
