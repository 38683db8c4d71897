/**
 * The database goes away (a TCP proxy in front of it stops) and comes back.
 * Meanwhile the API answers 503 STORAGE_UNAVAILABLE with retry-after and
 * nothing about the database; afterwards the worker carries on and the run
 * acknowledged before the outage completes with a gapless log.
 */
import { connect, createServer, type Server, type Socket } from "node:net"
import { locateService } from "@baton/adapter-conformance"
import { postgresStorage } from "@baton/adapter-postgres"
import { ALL_SCOPES, createEngine, type RunContext } from "@baton/core"
import { batonApp } from "@baton/transport-http"
import { describe, expect, it } from "vitest"
import { dropSchema, freshSchema, rawPool } from "./support.js"

const postgres = await locateService("postgres")

/** A TCP proxy to Postgres that can be cut (every socket destroyed, port closed) and restored on its port. */
const makeProxy = async (target: URL) => {
  const sockets = new Set<Socket>()
  let server: Server | null = null
  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      const s = createServer((client) => {
        const upstream = connect(Number(target.port || 5432), target.hostname)
        for (const socket of [client, upstream]) {
          sockets.add(socket)
          socket.on("close", () => sockets.delete(socket))
          socket.on("error", () => {})
        }
        client.pipe(upstream).pipe(client)
      })
      s.once("error", reject)
      s.listen(port, "127.0.0.1", () => {
        server = s
        resolve((s.address() as { port: number }).port)
      })
    })
  const port = await listen(0)
  return {
    port,
    cut: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => (server === null ? resolve() : server.close(() => resolve())))
      server = null
    },
    restore: () => listen(port),
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => (server === null ? resolve() : server.close(() => resolve())))
    }
  }
}

const deferred = () => {
  let resolve!: () => void
  const promise = new Promise<void>((r) => {
    resolve = r
  })
  return { promise, resolve }
}

if (postgres === null) it.skip("postgres outage: no Postgres found (set BATON_TEST_POSTGRES_URL)", () => {})
else
  describe("postgres: the database goes away and comes back", () => {
    it("answers 503 with retry-after meanwhile, then finishes the acknowledged run", async () => {
      const target = new URL(postgres.url)
      const proxy = await makeProxy(target)
      const schema = freshSchema()
      const admin = rawPool(postgres.url)
      const secret = "hunter2-not-for-clients"
      const viaProxy = new URL(postgres.url)
      viaProxy.port = String(proxy.port)
      viaProxy.password = secret
      if (viaProxy.username === "") viaProxy.username = "postgres"

      const inStep = deferred()
      const carryOn = deferred()
      const handler = async (run: RunContext) => {
        const first = await run.step("before", () => 1)
        const second = await run.step("during", async () => {
          inStep.resolve()
          await carryOn.promise
          return 2
        })
        return { sum: first + second }
      }
      const engine = createEngine({
        storage: postgresStorage({ url: viaProxy.toString(), schema, pollIntervalMs: 50 }),
        handlers: { outage: handler }
      })
      const worker = await engine.startWorker({ pollIntervalMs: 20, heartbeatMs: 200, leaseMs: 2000 })
      const app = batonApp(engine)
      try {
        const issued = await engine.issueKey({ name: "outage", scopes: [...ALL_SCOPES] })
        const headers = { authorization: `Bearer ${issued.key}`, "content-type": "application/json" }
        const created = await app.request("/v1/runs", {
          method: "POST",
          headers: { ...headers, "idempotency-key": "outage-1" },
          body: JSON.stringify({ handler: "outage", input: {} })
        })
        expect(created.status).toBe(201)
        const runId = ((await created.json()) as { id: string }).id
        await inStep.promise

        await proxy.cut()
        for (const [method, path, body] of [
          ["GET", `/v1/runs/${runId}`, undefined],
          ["POST", "/v1/runs", JSON.stringify({ handler: "outage", input: {} })]
        ] as const) {
          const res = await app.request(path, {
            method,
            headers: { ...headers, "idempotency-key": "outage-2" },
            ...(body === undefined ? {} : { body })
          })
          const text = await res.text()
          expect(res.status, text).toBe(503)
          expect(JSON.parse(text)).toMatchObject({ reason_code: "STORAGE_UNAVAILABLE" })
          expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1)
          for (const leak of [secret, String(proxy.port), "SELECT", "INSERT", schema])
            expect(text).not.toContain(leak)
        }
        const ready = await app.request("/readyz")
        expect(ready.status).toBe(503)

        // The step finishes while the database is away: its result must not be lost.
        carryOn.resolve()
        await proxy.restore()

        let final: { status: string; output: unknown; last_seq: number } | undefined
        const deadline = Date.now() + 20_000
        while (final === undefined || final.status !== "succeeded") {
          if (Date.now() > deadline) throw new Error(`the run did not finish: ${JSON.stringify(final)}`)
          await new Promise((r) => setTimeout(r, 50))
          const res = await app.request(`/v1/runs/${runId}`, { headers })
          if (res.status === 200) final = (await res.json()) as typeof final
        }
        expect(final.output).toEqual({ sum: 3 })
        const log = await engine.readEvents(runId, { limit: 1000 })
        expect(log.data.map((e) => e.seq)).toEqual(Array.from({ length: final.last_seq }, (_, i) => i + 1))
        // The request refused during the outage created nothing.
        const listed = await engine.listRuns({})
        expect(listed.data.map((r) => r.id)).toEqual([runId])
      } finally {
        carryOn.resolve()
        await worker.stop({ graceMs: 0 })
        await engine.dispose()
        await proxy.close()
        await dropSchema(admin, schema)
        await admin.end()
      }
    })
  })
