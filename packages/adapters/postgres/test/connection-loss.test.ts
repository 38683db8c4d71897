/**
 * The database drops every connection of the engine (pg_terminate_backend:
 * the pool's, and the LISTEN connection) while a run is in a step and a
 * client is reading its event stream over SSE. The run must complete, the
 * stream must carry on, and the log must stay gapless and duplicate-free.
 */
import { randomBytes } from "node:crypto"
import type { AddressInfo } from "node:net"
import { locateService, waitUntil } from "@baton/adapter-conformance"
import { postgresStorage } from "@baton/adapter-postgres"
import { ALL_SCOPES, createEngine, type RunContext, type RunEvent } from "@baton/core"
import { batonApp, createHttpClient } from "@baton/transport-http"
import { serve } from "@hono/node-server"
import { describe, expect, it } from "vitest"
import { dropSchema, freshSchema, rawPool } from "./support.js"

const postgres = await locateService("postgres")

const deferred = <A = void>() => {
  let resolve!: (a: A) => void
  const promise = new Promise<A>((r) => {
    resolve = r
  })
  return { promise, resolve }
}

const STEPS = 6
const KILL_AT = 2

if (postgres === null)
  it.skip("postgres connection loss: no Postgres found (set BATON_TEST_POSTGRES_URL)", () => {})
else
  describe("postgres: every engine connection terminated mid-run and mid-stream", () => {
    it("completes the run, resumes the stream, and keeps the log gapless", async () => {
      const schema = freshSchema()
      const applicationName = `baton_kill_${randomBytes(4).toString("hex")}`
      const admin = rawPool(postgres.url)
      const atKillPoint = deferred()
      const carryOn = deferred()

      const handler = async (run: RunContext) => {
        for (let i = 0; i < STEPS; i++)
          await run.step(`s${i}`, async (step) => {
            step.progress({ kind: "at", i })
            if (i === KILL_AT) {
              atKillPoint.resolve()
              await carryOn.promise
            }
            return i
          })
        return { done: true }
      }

      const engine = createEngine({
        storage: postgresStorage({ url: postgres.url, schema, applicationName }),
        handlers: { kill: handler }
      })
      const worker = await engine.startWorker({ pollIntervalMs: 20, heartbeatMs: 100, leaseMs: 5000 })
      const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
        const s = serve({ fetch: batonApp(engine).fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s))
      })
      try {
        const { port } = server.address() as AddressInfo
        const issued = await engine.issueKey({ name: "connection-loss", scopes: [...ALL_SCOPES] })
        let streamConnections = 0
        const client = createHttpClient({
          baseUrl: `http://127.0.0.1:${port}`,
          apiKey: issued.key,
          retryBaseMs: 50,
          fetch: (input, init) => {
            if (String(input).endsWith("/events/stream")) streamConnections++
            return fetch(input, init)
          }
        })

        const { run } = await client.createRun(
          { handler: "kill", input: {} },
          { idempotencyKey: `k-${applicationName}` }
        )
        const seen: RunEvent[] = []
        const reading = (async () => {
          for await (const event of client.streamEvents(run.id)) seen.push(event)
        })()

        await atKillPoint.promise
        await waitUntil("the stream to reach the kill point", () =>
          seen.some((e) => e.type === "step.progress" && (e.payload.value as { i?: number }).i === KILL_AT)
        )
        const killed = await admin.query(
          "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1",
          [applicationName]
        )
        // At least the LISTEN connection and the pool's connections were open.
        expect(killed.rows.length).toBeGreaterThanOrEqual(2)
        carryOn.resolve()

        await reading
        const final = await client.getRun(run.id)
        expect(final.status).toBe("succeeded")
        expect(final.output).toEqual({ done: true })

        const seqs = seen.map((e) => e.seq)
        expect(seqs).toEqual(Array.from({ length: final.last_seq }, (_, i) => i + 1))
        const log = await engine.readEvents(run.id, { limit: 1000 })
        expect(seen).toEqual(log.data)
        expect(seen.filter((e) => e.type === "step.done")).toHaveLength(STEPS)
        expect(streamConnections).toBeGreaterThanOrEqual(1)

        // The feed is listening again on a new connection (not left on its fallback poll).
        await waitUntil("the LISTEN connection to come back", async () => {
          const listening = await admin.query(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN %'",
            [applicationName]
          )
          return listening.rows.length === 1
        })
      } finally {
        carryOn.resolve()
        await worker.stop({ graceMs: 0 })
        if ("closeAllConnections" in server) server.closeAllConnections()
        await new Promise<void>((resolve) => server.close(() => resolve()))
        await engine.dispose()
        await dropSchema(admin, schema)
        await admin.end()
      }
    })
  })
