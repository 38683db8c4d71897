/**
 * Two servers (two containers, two engines, two key caches) on one Postgres
 * schema: a key revoked through one is refused by the other within a second;
 * the cache never accepts a wrong secret, and a key's expiry is honoured
 * while it is cached. Skipped loudly without Postgres, like ServerPostgres.
 */
import { randomBytes } from "node:crypto"
import { locateService } from "@baton/adapter-conformance"
import { makePgPoolExecutor } from "@baton/adapter-postgres"
import { afterAll, describe, expect, it } from "vitest"
import type { RunningServer } from "../src/Server.js"
import { api, serverHarness } from "./support.js"

const located = await locateService("postgres")
afterAll(async () => {
  await located?.stop()
})

const { start } = serverHarness()

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Calls GET /runs as `key` until it is refused; the time that took. */
const msUntilRefused = async (server: RunningServer, key: string, limitMs: number): Promise<number> => {
  const started = Date.now()
  while (Date.now() - started < limitMs) {
    if ((await api(server, key, "/runs")).status === 401) return Date.now() - started
    await sleep(20)
  }
  return Number.POSITIVE_INFINITY
}

describe("the key cache across processes on Postgres", () => {
  const withPostgres = located === null ? it.skip : it
  const name = located === null ? " (skipped: no Postgres found; see the warning above)" : ""

  withPostgres(`a revocation through A is refused by B within 1 s${name}`, async () => {
    if (located === null) return
    const schema = `baton_t_${randomBytes(6).toString("hex")}`
    const operator = `key_${randomBytes(12).toString("hex")}:${randomBytes(32).toString("base64url")}`
    const env = {
      BATON_STORAGE: "postgres",
      BATON_POSTGRES_URL: located.url,
      BATON_POSTGRES_SCHEMA: schema,
      BATON_POSTGRES_POOL_SIZE: "2",
      BATON_WORKER_CONCURRENCY: "0",
      BATON_BOOTSTRAP_KEY: operator
    }
    const opened: RunningServer[] = []
    try {
      const a = (await start(env)).server
      opened.push(a)
      const b = (await start(env)).server
      opened.push(b)

      const issued = await api(a, operator, "/api-keys", { scopes: ["runs:read"], name: "rotating" })
      expect(issued.status).toBe(201)
      const key = issued.body.key as string
      const keyId = issued.body.key_id as string
      // B verifies the key and caches it.
      expect((await api(b, key, "/runs")).status).toBe(200)
      expect((await api(b, key, "/runs")).status).toBe(200)
      // A wrong secret for the cached key is refused, and the right one still works afterwards.
      expect((await api(b, `${keyId}:${randomBytes(32).toString("base64url")}`, "/runs")).status).toBe(401)
      expect((await api(b, key, "/runs")).status).toBe(200)

      const revoked = await fetch(`${a.url}/v1/api-keys/${keyId}`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${operator}` }
      })
      expect(revoked.status).toBe(204)
      // On A at once (its cache entry was evicted)...
      expect((await api(a, key, "/runs")).status).toBe(401)
      // ... on B within the cache TTL (500 ms), well inside a second.
      expect(await msUntilRefused(b, key, 2000)).toBeLessThan(1000)

      // Expiry is checked on every request, cached or not.
      const expiresAt = Date.now() + 1500
      const short = await api(a, operator, "/api-keys", {
        scopes: ["runs:read"],
        expires_at: new Date(expiresAt).toISOString()
      })
      expect(short.status).toBe(201)
      const shortKey = short.body.key as string
      expect((await api(b, shortKey, "/runs")).status).toBe(200)
      expect(await msUntilRefused(b, shortKey, 4000)).toBeLessThan(4000)
      // Refused no earlier than its expiry, and (polling every 20 ms) promptly after it.
      expect(Date.now()).toBeGreaterThanOrEqual(expiresAt)
      expect(Date.now()).toBeLessThan(expiresAt + 500)
      expect((await api(b, shortKey, "/runs")).status).toBe(401)
    } finally {
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
