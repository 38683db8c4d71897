/**
 * The server on the machine's Postgres (found by locateService; skipped with a
 * loud warning when there is none, unless BATON_TEST_REQUIRE names postgres),
 * in a fresh schema dropped afterwards.
 */
import { randomBytes } from "node:crypto"
import { locateService } from "@baton/adapter-conformance"
import { makePgPoolExecutor } from "@baton/adapter-postgres"
import { afterAll, describe, expect, it } from "vitest"
import type { RunningServer } from "../src/Server.js"
import { migrateStorage } from "../src/ServerStorage.js"
import { api, configFor, runIdOf, serverHarness, waitFor } from "./support.js"

const located = await locateService("postgres")
afterAll(async () => {
  await located?.stop()
})

const { start } = serverHarness()

describe("the server on Postgres", () => {
  const withPostgres = located === null ? it.skip : it
  const name = located === null ? " (skipped: no Postgres found; see the warning above)" : ""

  withPostgres(`starts on a fresh schema, runs the demo handler, and restarts on it${name}`, async () => {
    if (located === null) return
    const schema = `baton_t_${randomBytes(6).toString("hex")}`
    const env = {
      BATON_STORAGE: "postgres",
      BATON_POSTGRES_URL: located.url,
      BATON_POSTGRES_SCHEMA: schema,
      BATON_POSTGRES_POOL_SIZE: "4",
      BATON_WORKER_CONCURRENCY: "2"
    }
    const opened: RunningServer[] = []
    try {
      const first = await start(env)
      opened.push(first.server)
      expect(first.lines[0]).toMatch(new RegExp(`^Storage: postgres \\(.+, schema ${schema}\\)\\.$`))
      const key = first.server.createdKey
      if (key === null) throw new Error("a fresh schema holds no key: one must be created")
      const runId = runIdOf(await api(first.server, key, "/runs", { input: { user_query: "on postgres?" } }))
      await waitFor(first.server.engine, runId, "run.worker.succeeded")
      const events = await api(first.server, key, `/runs/${runId}/events?after_seq=0&limit=1000`)
      await first.server.close()

      const second = await start(env)
      opened.push(second.server)
      expect(second.server.createdKey).toBeNull()
      expect((await api(second.server, key, `/runs/${runId}`)).body).toMatchObject({ status: "succeeded" })
      expect(await api(second.server, key, `/runs/${runId}/events?after_seq=0&limit=1000`)).toEqual(events)
      await second.server.close()

      // The schema is current: `baton migrate` applies nothing.
      expect(await migrateStorage(configFor(env))).toMatchObject({ applied: [] })
    } finally {
      // Closed before the DROP (close() is idempotent), so no connection of theirs holds the schema.
      await Promise.all(opened.map((s) => s.close()))
      const db = makePgPoolExecutor({ connectionString: located.url, max: 1 })
      try {
        await db.exec(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      } finally {
        await db.close()
      }
    }
  })
})
