/**
 * The database goes away (a TCP proxy in front of it stops) and comes back.
 * Meanwhile the API answers 503 STORAGE_UNAVAILABLE with retry-after and
 * nothing about the database; afterwards the worker carries on and the run
 * acknowledged before the outage completes with a gapless log.
 */
import { connect, createServer, type Server, type Socket } from "node:net"
import { locateService, waitUntil } from "@baton/adapter-conformance"
import { postgresStorage } from "@baton/adapter-postgres"
import { ALL_SCOPES, createEngine, type RunContext } from "@baton/core"
import { batonApp } from "@baton/transport-http"
import { describe, expect, it } from "vitest"
import { dropSchema, freshSchema, rawPool } from "./support.js"

const postgres = await locateService("postgres")

/**
 * A TCP proxy in front of Postgres with three modes: `pass`; `refuse` (every
 * socket destroyed, new ones destroyed on arrival and counted: the database
 * is down); `blackhole` (sockets stay open, bytes vanish: a partition).
 */
const makeProxy = async (target: URL) => {
  type Mode = "pass" | "refuse" | "blackhole"
  let mode: Mode = "pass"
  let refused = 0
  const pairs = new Set<{ client: Socket; upstream: Socket }>()
  const server: Server = createServer((client) => {
    client.on("error", () => {})
    if (mode === "refuse") {
      refused++
      client.destroy()
      return
    }
    const upstream = connect(Number(target.port || 5432), target.hostname)
    upstream.on("error", () => {})
    const pair = { client, upstream }
    pairs.add(pair)
    const forget = () => pairs.delete(pair)
    client.on("close", forget)
    upstream.on("close", forget)
    // Written by hand rather than piped, so a black hole can swallow bytes without closing anything.
    client.on("data", (chunk) => {
      if (mode === "pass") upstream.write(chunk)
    })
    upstream.on("data", (chunk) => {
      if (mode === "pass") client.write(chunk)
    })
    client.on("close", () => upstream.destroy())
    upstream.on("close", () => client.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    port: (server.address() as { port: number }).port,
    /** Connections refused since the last `refuse()`. */
    refusedSince: () => refused,
    refuse: () => {
      mode = "refuse"
      refused = 0
      for (const { client, upstream } of pairs) {
        client.destroy()
        upstream.destroy()
      }
    },
    blackhole: () => {
      mode = "blackhole"
    },
    pass: () => {
      mode = "pass"
    },
    close: async () => {
      for (const { client, upstream } of pairs) {
        client.destroy()
        upstream.destroy()
      }
      await new Promise<void>((resolve) => server.close(() => resolve()))
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
      // Quiet everything else that would connect during the outage (LISTEN reconnects, sweeps,
      // heartbeats, claims of a busy worker), so a refused connection there is the step's write.
      const engine = createEngine({
        storage: postgresStorage({ url: viaProxy.toString(), schema, feed: "poll" }),
        handlers: { outage: handler }
      })
      const worker = await engine.startWorker({
        concurrency: 1,
        pollIntervalMs: 20,
        heartbeatMs: 60_000,
        leaseMs: 180_000,
        sweepIntervalMs: 600_000
      })
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

        proxy.refuse()
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

        // The step finishes while the database is away: its write fails (a connection attempt is refused),
        // is retried with backoff, and must not be lost.
        const before = proxy.refusedSince()
        carryOn.resolve()
        await waitUntil(
          "the worker to try its write while the database is away",
          () => proxy.refusedSince() > before,
          { timeoutMs: 15_000, intervalMs: 20 }
        )
        proxy.pass()

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

    it("answers 503 when the database's packets vanish (a partition), instead of hanging", async () => {
      const proxy = await makeProxy(new URL(postgres.url))
      const schema = freshSchema()
      const admin = rawPool(postgres.url)
      const viaProxy = new URL(postgres.url)
      viaProxy.port = String(proxy.port)
      const engine = createEngine({
        storage: postgresStorage({ url: viaProxy.toString(), schema, queryTimeoutMs: 500 })
      })
      const app = batonApp(engine)
      try {
        const issued = await engine.issueKey({ name: "partition", scopes: [...ALL_SCOPES] })
        const headers = { authorization: `Bearer ${issued.key}` }
        expect((await app.request("/v1/runs", { headers })).status).toBe(200)

        proxy.blackhole()
        const res = await app.request("/v1/runs", { headers })
        expect(res.status).toBe(503)
        expect(await res.json()).toMatchObject({ reason_code: "STORAGE_UNAVAILABLE" })

        // The timed-out connections were dropped, not handed out again: once packets flow, calls succeed.
        proxy.pass()
        await waitUntil(
          "the API to answer again",
          async () => (await app.request("/v1/runs", { headers })).status === 200,
          { timeoutMs: 15_000, intervalMs: 20 }
        )
      } finally {
        await engine.dispose()
        await proxy.close()
        await dropSchema(admin, schema)
        await admin.end()
      }
    })
  })
