/**
 * The server on the storage it is configured with: PGlite (the default)
 * across a restart, a data directory one server at a time, `baton migrate`,
 * memory, and a Postgres that cannot be reached.
 */
import { existsSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { migrateStorage, StorageStartError } from "../src/ServerStorage.js"
import { api, configFor, runIdOf, serverHarness, waitFor } from "./support.js"

// Each PGlite open takes a few seconds; a test here opens up to four.
const PGLITE_TIMEOUT_MS = 60_000

const { tempDir, start, startFailure } = serverHarness()

describe("the server on PGlite (the default)", () => {
  it(
    "keeps runs, events and the created key across a restart on the same data dir",
    async () => {
      const dataDir = join(await tempDir(), "data")
      const env = { BATON_DATA_DIR: dataDir, BATON_WORKER_CONCURRENCY: "2" }

      const first = await start(env)
      expect(first.lines[0]).toBe(`Storage: pglite (data dir ${dataDir}).`)
      const key = first.server.createdKey
      if (key === null) throw new Error("a fresh data dir holds no key: one must be created")

      const answered = runIdOf(
        await api(first.server, key, "/runs", { input: { user_query: "does it persist?" } })
      )
      const waiting = runIdOf(
        await api(first.server, key, "/runs", {
          input: { user_query: "wait for me", require_approval: true }
        })
      )
      await waitFor(first.server.engine, answered, "run.worker.succeeded")
      await waitFor(first.server.engine, waiting, "run.awaiting_input")

      const before = {
        answered: await api(first.server, key, `/runs/${answered}`),
        waiting: await api(first.server, key, `/runs/${waiting}`),
        answeredEvents: await api(first.server, key, `/runs/${answered}/events?after_seq=0&limit=1000`),
        waitingEvents: await api(first.server, key, `/runs/${waiting}/events?after_seq=0&limit=1000`)
      }
      expect(before.answered.body).toMatchObject({ id: answered, status: "succeeded" })
      expect(before.waiting.body).toMatchObject({ id: waiting, status: "awaiting_input" })
      expect(before.answeredEvents.body.has_more).toBe(false)
      await first.server.close()

      const second = await start(env)
      expect(second.server.createdKey).toBeNull()
      expect(second.lines.join("\n")).not.toContain("Created an API key")

      // The same runs and events, byte for byte as the API gives them, with the key printed the first time.
      expect(await api(second.server, key, `/runs/${answered}`)).toEqual(before.answered)
      expect(await api(second.server, key, `/runs/${waiting}`)).toEqual(before.waiting)
      const answeredEvents = await api(second.server, key, `/runs/${answered}/events?after_seq=0&limit=1000`)
      expect(answeredEvents).toEqual(before.answeredEvents)
      const events = answeredEvents.body.data as ReadonlyArray<{ seq: number; type: string }>
      expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1))
      expect(events.at(-1)?.type).toBe("run.worker.succeeded")
      expect(await api(second.server, key, `/runs/${waiting}/events?after_seq=0&limit=1000`)).toEqual(
        before.waitingEvents
      )
      const listed = await api(second.server, key, "/runs?limit=100")
      expect((listed.body.data as ReadonlyArray<{ id: string }>).map((r) => r.id).sort()).toEqual(
        [answered, waiting].sort()
      )
      expect((await second.server.engine.listKeys()).map((k) => k.name)).toEqual(["bootstrap"])

      // A wait begun before the restart is answered after it.
      const signalled = await api(second.server, key, `/runs/${waiting}/signal`, { action: "approve" })
      expect(signalled.status).toBe(202)
      await waitFor(second.server.engine, waiting, "run.worker.succeeded")
      expect((await api(second.server, key, `/runs/${waiting}`)).body).toMatchObject({ status: "succeeded" })
    },
    PGLITE_TIMEOUT_MS
  )

  it(
    "refuses a second server on a data dir in use, and the first one carries on",
    async () => {
      const dataDir = join(await tempDir(), "data")
      const env = { BATON_DATA_DIR: dataDir, BATON_WORKER_CONCURRENCY: "0" }
      const { server } = await start(env)

      const error = await startFailure(env)
      expect(error).toBeInstanceOf(StorageStartError)
      expect((error as Error).message).toBe(
        `Storage pglite (data dir ${dataDir}) failed to start: The data directory ${dataDir} is in use by ` +
          `process ${process.pid}; stop it or choose another BATON_DATA_DIR.`
      )

      expect((await fetch(`${server.url}/healthz`)).status).toBe(200)
      expect(await server.engine.listKeys()).toHaveLength(1)
      await server.close()
      expect(existsSync(`${dataDir}.lock`)).toBe(false)
    },
    PGLITE_TIMEOUT_MS
  )

  it(
    "with BATON_AUTO_MIGRATE=false refuses a schema behind until `baton migrate` brings it up to date",
    async () => {
      const dataDir = join(await tempDir(), "data")
      const env = { BATON_DATA_DIR: dataDir, BATON_AUTO_MIGRATE: "false", BATON_WORKER_CONCURRENCY: "0" }

      const error = await startFailure(env)
      expect(error).toBeInstanceOf(StorageStartError)
      expect((error as Error).message).toContain("run `baton migrate`")

      const config = configFor(env)
      const migrated = await migrateStorage(config)
      expect(migrated.target).toBe(`pglite (data dir ${dataDir})`)
      expect(migrated.from).toBe(0)
      expect(migrated.applied.length).toBeGreaterThan(0)
      expect(migrated.applied.at(-1)?.version).toBe(migrated.to)
      expect(await migrateStorage(config)).toMatchObject({ from: migrated.to, to: migrated.to, applied: [] })

      const { server } = await start(env)
      expect(server.createdKey).not.toBeNull()
    },
    PGLITE_TIMEOUT_MS
  )

  it(
    "`baton migrate` fails with the in-use message while a server holds the data dir",
    async () => {
      const dataDir = join(await tempDir(), "data")
      const env = { BATON_DATA_DIR: dataDir, BATON_WORKER_CONCURRENCY: "0" }
      await start(env)
      await expect(migrateStorage(configFor(env))).rejects.toThrow(
        new StorageStartError(
          `Could not migrate pglite (data dir ${dataDir}): The data directory ${dataDir} is in use by ` +
            `process ${process.pid}; stop it or choose another BATON_DATA_DIR.`
        )
      )
    },
    PGLITE_TIMEOUT_MS
  )
})

describe("the server on memory", () => {
  it("says so, and `baton migrate` has nothing to do", async () => {
    const { lines } = await start({ BATON_STORAGE: "memory" })
    expect(lines[0]).toBe("Storage: memory (in this process; nothing is kept after it exits).")
    expect(await migrateStorage(configFor({ BATON_STORAGE: "memory" }))).toMatchObject({ applied: [] })
  })
})

describe("the server on Postgres", () => {
  it("fails to start with one line naming the database, never its password, when it is unreachable", async () => {
    const password = "hunter2-never-shown"
    // Port 1 on loopback: nothing listens, so the connection is refused at once.
    const env = {
      BATON_STORAGE: "postgres",
      BATON_POSTGRES_URL: `postgres://baton:${password}@127.0.0.1:1/baton`
    }
    const error = await startFailure(env)
    expect(error).toBeInstanceOf(StorageStartError)
    const message = (error as Error).message
    expect(message).toBe(
      "Storage postgres (127.0.0.1:1/baton, schema baton) failed to start: " +
        "The Postgres store could not be reached (ECONNREFUSED)."
    )
    await expect(migrateStorage(configFor(env))).rejects.toThrow(
      "Could not migrate postgres (127.0.0.1:1/baton, schema baton): the database could not be reached (ECONNREFUSED)."
    )
  })
})
