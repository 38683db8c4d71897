import { memoryStorage } from "@baton/adapter-memory"
import { ALL_SCOPES, type AnyHandler, type BatonEngine, createEngine, type RunEvent } from "@baton/core"
import { afterEach, describe, expect, it } from "vitest"
import { ConfigError, loadConfig, type ServerConfig } from "../src/Config.js"
import { type RunningServer, type StartServerOptions, startServer } from "../src/Server.js"

const BOOTSTRAP = "key_bootstrap0001:s3cr3t-s3cr3t-s3cr3t-abcdef"
const BOOTSTRAP_SECRET = "s3cr3t-s3cr3t-s3cr3t-abcdef"

const servers: RunningServer[] = []
const engines: BatonEngine[] = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()))
  await Promise.all(engines.splice(0).map((e) => e.dispose()))
})

// Memory unless a test says otherwise: these tests are not about storage, and PGlite takes seconds to open.
const configFor = (env: NodeJS.ProcessEnv = {}): ServerConfig => ({
  ...loadConfig({ PORT: "0", HOST: "127.0.0.1", BATON_STORAGE: "memory", ...env }),
  shutdownGraceMs: 100
})

const start = async (
  options: Partial<StartServerOptions> & { env?: NodeJS.ProcessEnv } = {}
): Promise<{ server: RunningServer; lines: string[] }> => {
  const lines: string[] = []
  const { env, ...rest } = options
  const server = await startServer({ config: configFor(env), log: (line) => lines.push(line), ...rest })
  servers.push(server)
  return { server, lines }
}

/** A handler whose only step waits until the execution is stopped. */
const blocking: AnyHandler = (run) =>
  run.step(
    "block",
    (step) =>
      new Promise<string>((_resolve, reject) => {
        step.signal.addEventListener("abort", () => reject(step.signal.reason))
      })
  )

/** Follows a run's events until `type` is seen (then lets go of the subscription). */
const waitFor = async (engine: BatonEngine, runId: string, type: RunEvent["type"]): Promise<void> => {
  for await (const event of await engine.subscribe(runId)) if (event.type === type) return
  throw new Error(`the run ended without ${type}`)
}

const createRun = async (engine: BatonEngine, handler: string): Promise<string> => {
  const created = await engine.createRun({ handler, input: { user_query: "hi" } })
  if (created._tag !== "Created") throw new Error("expected a new run")
  return created.run.id
}

describe("startServer", () => {
  it("serves /healthz on the port it was given (0 = a free one), and JSON 404s elsewhere", async () => {
    const { server } = await start()
    expect(server.port).toBeGreaterThan(0)
    expect(server.url).toBe(`http://127.0.0.1:${server.port}`)
    const response = await fetch(`${server.url}/healthz`)
    expect(response.status).toBe(200)
    expect(await response.json()).toMatchObject({ status: "ok" })
    const missing = await fetch(`${server.url}/nowhere`)
    expect(missing.status).toBe(404)
    expect(await missing.json()).toMatchObject({ reason_code: "ROUTE_NOT_FOUND" })
  })

  it("creates a key when storage has none, and logs it exactly once", async () => {
    const { server, lines } = await start()
    const key = server.createdKey
    expect(key).toMatch(/^key_[A-Za-z0-9]+:[A-Za-z0-9_-]+$/)
    if (key === null) return
    const secret = key.slice(key.indexOf(":") + 1)
    expect(lines.filter((l) => l.includes(secret))).toHaveLength(1)
    expect(lines.filter((l) => l.includes(key))).toHaveLength(1)
    expect(lines.join("\n")).toContain("BATON_BOOTSTRAP_KEY")
    const principal = await server.engine.verifyKey(key)
    expect(principal).toMatchObject({ customerId: "default", scopes: ALL_SCOPES })
  })

  it("does not create a key when storage already holds one", async () => {
    const storage = memoryStorage()
    const first = await start({ storage })
    expect(first.server.createdKey).not.toBeNull()
    await first.server.close()
    const second = await start({ storage })
    expect(second.server.createdKey).toBeNull()
    if (first.server.createdKey !== null) await second.server.engine.verifyKey(first.server.createdKey)
  })

  it("ensures BATON_BOOTSTRAP_KEY, logging its id but never its secret", async () => {
    const storage = memoryStorage()
    const { server, lines } = await start({ storage, env: { BATON_BOOTSTRAP_KEY: BOOTSTRAP } })
    expect(server.createdKey).toBeNull()
    expect(await server.engine.verifyKey(BOOTSTRAP)).toMatchObject({
      customerId: "default",
      keyId: "key_bootstrap0001",
      scopes: ALL_SCOPES
    })
    expect(lines.some((l) => l.includes("key_bootstrap0001"))).toBe(true)
    expect(lines.join("\n")).not.toContain(BOOTSTRAP_SECRET)
    await server.close()

    // A restart on the same storage ensures the same key again.
    const again = await start({ storage, env: { BATON_BOOTSTRAP_KEY: BOOTSTRAP } })
    expect(await again.server.engine.verifyKey(BOOTSTRAP)).toMatchObject({ keyId: "key_bootstrap0001" })
  })

  it("refuses a BATON_BOOTSTRAP_KEY whose id storage holds with another secret", async () => {
    const storage = memoryStorage()
    const first = await start({ storage, env: { BATON_BOOTSTRAP_KEY: BOOTSTRAP } })
    await first.server.close()
    const other = "key_bootstrap0001:another-secret-another-secret"
    const error: unknown = await startServer({
      config: configFor({ BATON_BOOTSTRAP_KEY: other }),
      storage,
      log: () => {}
    }).then(
      (server) => servers.push(server),
      (e: unknown) => e
    )
    expect(error).toBeInstanceOf(ConfigError)
    if (!(error instanceof ConfigError)) return
    expect(error.variable).toBe("BATON_BOOTSTRAP_KEY")
    expect(error.message).toContain("key_bootstrap0001")
    expect(error.message).not.toContain("another-secret")
  })

  it("runs the demo handler as `default`, and handlers given to it by name", async () => {
    const { server } = await start({ handlers: { echo: (run) => ({ echoed: run.input }) } })
    const demo = await createRun(server.engine, "default")
    await waitFor(server.engine, demo, "run.worker.succeeded")
    expect((await server.engine.getRun(demo)).output).toMatchObject({ answer: expect.stringContaining("hi") })
    const echo = await createRun(server.engine, "echo")
    await waitFor(server.engine, echo, "run.worker.succeeded")
    expect((await server.engine.getRun(echo)).output).toEqual({ echoed: { user_query: "hi" } })
    await expect(createRun(server.engine, "unknown")).rejects.toMatchObject({
      reason_code: "HANDLER_NOT_FOUND"
    })
  })

  it("starts no worker with BATON_WORKER_CONCURRENCY=0, and still checks handler names", async () => {
    const { server, lines } = await start({ env: { BATON_WORKER_CONCURRENCY: "0" } })
    expect(lines.join("\n")).toContain("API only")
    expect(lines.join("\n")).not.toMatch(/Worker .* started/)
    const runId = await createRun(server.engine, "default")
    expect((await server.engine.getRun(runId)).status).toBe("queued")
    await expect(createRun(server.engine, "unknown")).rejects.toMatchObject({
      reason_code: "HANDLER_NOT_FOUND"
    })
  })

  it("fails to start, cleanly, when the port is taken", async () => {
    const { server } = await start()
    const taken = startServer({ config: { ...configFor(), port: server.port }, log: () => {} })
    await expect(taken).rejects.toMatchObject({ code: "EADDRINUSE" })
  })

  it("close() stops serving, releases the leases of runs in flight, and is idempotent", async () => {
    const storage = memoryStorage()
    const { server, lines } = await start({ storage, handlers: { blocking } })
    const runId = await createRun(server.engine, "blocking")
    await waitFor(server.engine, runId, "step.started")

    const closing = server.close()
    expect(server.close()).toBe(closing)
    await closing
    await server.close()
    expect(lines.at(-1)).toBe("Stopped.")
    await expect(fetch(`${server.url}/healthz`)).rejects.toThrow()

    // The lease was released: another engine on the same storage resumes the run at once
    // (a lease left to expire would take 30 s, past this test's timeout).
    const next = createEngine({ storage, handlers: { blocking: (run) => run.step("block", () => "done") } })
    engines.push(next)
    await next.startWorker({ pollIntervalMs: 10 })
    const events: RunEvent[] = []
    for await (const event of await next.subscribe(runId)) events.push(event)
    expect(events.find((e) => e.type === "run.requeued")?.payload.value).toMatchObject({
      reason: "lease_expired"
    })
    expect((await next.getRun(runId)).status).toBe("succeeded")
  }, 10_000)

  it("limits each key by BATON_RATE_LIMIT_* and BATON_SSE_MAX_PER_KEY", async () => {
    const { server } = await start({
      handlers: { blocking },
      env: { BATON_RATE_LIMIT_PER_SECOND: "1", BATON_RATE_LIMIT_BURST: "3", BATON_SSE_MAX_PER_KEY: "1" }
    })
    const key = server.createdKey ?? ""
    const get = (path: string, signal?: AbortSignal) =>
      fetch(`${server.url}/v1${path}`, {
        headers: { authorization: `Bearer ${key}` },
        ...(signal === undefined ? {} : { signal })
      })
    const runId = await createRun(server.engine, "blocking")
    const controller = new AbortController()
    const open = await get(`/runs/${runId}/events/stream`, controller.signal)
    expect(open.status).toBe(200)
    const second = await get(`/runs/${runId}/events/stream`)
    expect(second.status).toBe(429)
    expect(await second.json()).toMatchObject({ reason_code: "RATE_LIMITED" })
    controller.abort()
    // Burst 3, one more a second: a few quick requests spend it (however slow this machine is).
    let limited: Response | null = null
    for (let i = 0; i < 20 && limited === null; i++) {
      const res = await get("/runs")
      if (res.status === 429) limited = res
      else expect(res.status).toBe(200)
    }
    if (limited === null) throw new Error("twenty requests at once were never rate limited")
    expect(limited.headers.get("retry-after")).toBe("1")
    expect(await limited.json()).toMatchObject({ reason_code: "RATE_LIMITED" })
  })

  it("close() ends open event streams", async () => {
    const { server } = await start({ handlers: { blocking } })
    const key = server.createdKey ?? ""
    const runId = await createRun(server.engine, "blocking")
    await waitFor(server.engine, runId, "step.started")
    const response = await fetch(`${server.url}/v1/runs/${runId}/events/stream`, {
      headers: { authorization: `Bearer ${key}` }
    })
    expect(response.status).toBe(200)
    const reader = response.body?.getReader()
    if (reader === undefined) throw new Error("no body")
    await reader.read() // the stream is open and has sent its first bytes
    const drained = (async () => {
      try {
        while (!(await reader.read()).done) {}
      } catch {
        // The server cut the connection: the stream is over either way.
      }
    })()
    await server.close()
    await drained
  }, 10_000)
})
