/**
 * A real listening server for the HTTP contract tests: an engine over the
 * memory adapter, the transport's routes mounted as an embedder mounts them
 * (or the transport's `batonApp`),
 * `@hono/node-server` on an ephemeral port of 127.0.0.1, a worker executing
 * the test handlers, and an operator key. Nothing here depends on
 * packages/server.
 */
import type { AddressInfo } from "node:net"
import { type MemoryStore, makeMemoryStore, memoryStorage } from "@baton/adapter-memory"
import { type BatonEngine, createEngine, Engine, type Worker } from "@baton/core"
import { type BatonRoutesOptions, batonApp, batonRoutes, healthRoutes } from "@baton/transport-http"
import { serve } from "@hono/node-server"
import { Effect } from "effect"
import { Hono } from "hono"
import { afterAll, beforeAll } from "vitest"
import { ACCEPTED_HANDLERS, Gates, makeHandlers } from "./Handlers.js"

export interface HarnessOptions {
  readonly corsOrigins?: ReadonlyArray<string>
  readonly bufferLimitBytes?: number
  /** How long a reader with a full buffer may take nothing before it is let go. */
  readonly stallMs?: number
  readonly heartbeatMs?: number
  /**
   * `routes` (default): `healthRoutes` at `/` and `batonRoutes` at `/v1`, mounted by hand as an
   * embedder would; `app`: the transport's own `batonApp`, which also answers unknown top-level paths.
   */
  readonly compose?: "routes" | "app"
  /** Per-key limits of the routes (default: none, as the transport's defaults). */
  readonly rateLimit?: BatonRoutesOptions["rateLimit"]
  readonly sseMaxPerKey?: number
}

export interface Harness {
  /** `http://127.0.0.1:<port>` */
  readonly baseUrl: string
  readonly engine: BatonEngine
  readonly gates: Gates
  /** The operator's key (customer `default`, every scope). */
  readonly operatorKey: string
  /** Event-feed subscriptions open right now: one per live SSE stream (the engine's only feed user). */
  readonly openFeedSubscriptions: () => number
  readonly close: () => Promise<void>
}

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
const B64URL = `${ALNUM}-_`
const randomOf = (alphabet: string, n: number): string =>
  Array.from({ length: n }, () => alphabet[Math.floor(Math.random() * alphabet.length)]).join("")

/** A well-formed `key_<24 alnum>:<43 base64url>` that no store knows. */
export const randomKeyString = (): string => `key_${randomOf(ALNUM, 24)}:${randomOf(B64URL, 43)}`

/** Counts the feed subscriptions of `inner`: opened when a stream subscribes, closed with its scope. */
const countingStore = (inner: MemoryStore): { store: MemoryStore; open: () => number } => {
  let open = 0
  const store: MemoryStore = {
    ...inner,
    eventFeed: {
      subscribe: (runId) =>
        Effect.acquireRelease(
          Effect.sync(() => {
            open++
          }),
          () =>
            Effect.sync(() => {
              open--
            })
        ).pipe(Effect.zipRight(inner.eventFeed.subscribe(runId)))
    }
  }
  return { store, open: () => open }
}

export const startHarness = async (options: HarnessOptions = {}): Promise<Harness> => {
  const gates = new Gates()
  const counted = countingStore(makeMemoryStore())
  const engine = createEngine({
    storage: memoryStorage(counted.store),
    handlers: makeHandlers(gates),
    // `parked` is accepted but no worker executes it, so its runs stay queued.
    config: { handlers: new Set<string>(ACCEPTED_HANDLERS), feedPollIntervalMs: 1000 }
  })
  const operatorKey = randomKeyString()
  await engine.run(Engine.ensureKey(operatorKey, "default"))

  const routeOptions: BatonRoutesOptions = {
    ...(options.corsOrigins === undefined ? {} : { corsOrigins: options.corsOrigins }),
    ...(options.rateLimit === undefined ? {} : { rateLimit: options.rateLimit }),
    ...(options.sseMaxPerKey === undefined ? {} : { sseMaxPerKey: options.sseMaxPerKey }),
    sse: {
      heartbeatMs: options.heartbeatMs ?? 100,
      ...(options.bufferLimitBytes === undefined ? {} : { bufferLimitBytes: options.bufferLimitBytes }),
      ...(options.stallMs === undefined ? {} : { stallMs: options.stallMs })
    }
  }
  const app = options.compose === "app" ? batonApp(engine, routeOptions) : new Hono()
  if (options.compose !== "app") {
    app.route("/", healthRoutes(engine))
    app.route("/v1", batonRoutes(engine, routeOptions))
  }

  let worker: Worker.WorkerHandle | null = null
  const { server, port } = await new Promise<{ server: ReturnType<typeof serve>; port: number }>(
    (resolve, reject) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info: AddressInfo) =>
        resolve({ server: s, port: info.port })
      )
      s.once("error", reject)
    }
  )
  try {
    worker = await engine.startWorker({
      pollIntervalMs: 5,
      heartbeatMs: 50,
      leaseMs: 2000,
      retry: { initialDelayMs: 1 }
    })
  } catch (e) {
    server.close()
    await engine.dispose()
    throw e
  }

  const close = async () => {
    await worker?.stop({ graceMs: 0 })
    if ("closeAllConnections" in server) server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
    await engine.dispose({ graceMs: 0 })
  }

  return {
    baseUrl: `http://127.0.0.1:${port}`,
    engine,
    gates,
    operatorKey,
    openFeedSubscriptions: counted.open,
    close
  }
}

/**
 * Starts one harness for the calling test file (`beforeAll`) and closes it afterwards
 * (`afterAll`). Returns a view of it whose members read the harness started for the file,
 * so it can be declared at the top level and used as a `Harness` by the tests.
 */
export const useHarness = (options?: HarnessOptions): Harness => {
  let current: Harness | undefined
  beforeAll(async () => {
    current = await startHarness(options)
  })
  afterAll(async () => {
    await current?.close()
  })
  const started = (): Harness => {
    if (current === undefined) throw new Error("useHarness: the harness is used before beforeAll started it")
    return current
  }
  return {
    get baseUrl() {
      return started().baseUrl
    },
    get engine() {
      return started().engine
    },
    get gates() {
      return started().gates
    },
    get operatorKey() {
      return started().operatorKey
    },
    openFeedSubscriptions: () => started().openFeedSubscriptions(),
    close: () => started().close()
  }
}
