/**
 * The self-host composition root: config → tsyringe container → engine →
 * storage opened → bootstrap key → worker → Hono app → HTTP server, and the
 * graceful shutdown that undoes it in reverse. Needs the `reflect-metadata`
 * polyfill loaded first (tsyringe asks for it); `main.ts` imports it.
 */
import { Server as HttpServer } from "node:http"
import type { AddressInfo } from "node:net"
import {
  ALL_SCOPES,
  type AnyHandler,
  type BatonEngine,
  Engine,
  engineFromContainer,
  LOCAL_PRINCIPAL,
  registerEngine,
  type StorageAdapter,
  type Worker
} from "@baton/core"
import { batonApp } from "@baton/transport-http"
import { serve } from "@hono/node-server"
import { container } from "tsyringe"
import { ConfigError, keyIdOf, type LogLevel, type ServerConfig } from "./Config.js"
import { demoHandler } from "./DemoHandler.js"
import { describeStorage, StorageStartError, storageFor } from "./ServerStorage.js"

export interface StartServerOptions {
  readonly config: ServerConfig
  /** Merged over the built-in `default` demo handler (a `default` here replaces it). */
  readonly handlers?: Readonly<Record<string, AnyHandler>>
  /** Overrides `config.storage` (e.g. from `baton.config.ts`). */
  readonly storage?: StorageAdapter
  /** Receives each log line (default: none). Lines never contain a secret but the one-time created key. */
  readonly log?: (line: string) => void
}

export interface RunningServer {
  /** `http://host:port`, connectable (a wildcard host is given as 127.0.0.1). */
  readonly url: string
  /** The port listened on (the real one when the config said 0). */
  readonly port: number
  readonly engine: BatonEngine
  /** The key created at start (`key_id:secret`, shown once), or null when one was configured or stored. */
  readonly createdKey: string | null
  /** Graceful shutdown; a second call waits for the first and does nothing more. */
  close(): Promise<void>
}

const LEVELS: Readonly<Record<LogLevel, number>> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 }

/** A URL a client on this machine can connect to, for the host listened on. */
const connectableUrl = (host: string, port: number): string => {
  const local = host === "0.0.0.0" ? "127.0.0.1" : host === "::" || host === "[::]" ? "::1" : host
  return `http://${local.includes(":") && !local.startsWith("[") ? `[${local}]` : local}:${port}`
}

/** Whether storage already holds a usable key of the `default` customer. */
const hasUsableKey = async (engine: BatonEngine): Promise<boolean> => {
  const now = Date.now()
  const keys = await engine.listKeys(LOCAL_PRINCIPAL)
  return keys.some((k) => k.revoked_at === null && (k.expires_at === null || Date.parse(k.expires_at) > now))
}

/** A storage failure's own message: adapters write it for operators, without SQL or secrets. */
const storageMessage = (error: unknown): string =>
  typeof error === "object" && error !== null && "message" in error && typeof error.message === "string"
    ? error.message
    : "unknown error."

/** `ensureKey` found the key id with another secret, revoked or expired. */
const isKeyRefused = (error: unknown): boolean =>
  typeof error === "object" &&
  error !== null &&
  "reason_code" in error &&
  error.reason_code === "AUTH_KEY_INVALID"

type FetchHandler = Parameters<typeof serve>[0]["fetch"]

const listen = (fetch: FetchHandler, config: ServerConfig): Promise<HttpServer> =>
  new Promise((resolve, reject) => {
    const server = serve({ fetch, port: config.port, hostname: config.host })
    if (!(server instanceof HttpServer)) {
      reject(new Error("Expected an HTTP/1.1 server."))
      return
    }
    const onError = (error: Error) => {
      server.off("listening", onListening)
      reject(error)
    }
    const onListening = () => {
      server.off("error", onError)
      resolve(server)
    }
    server.once("error", onError)
    server.once("listening", onListening)
  })

const closeHttp = (server: HttpServer): Promise<void> =>
  new Promise((resolve) => {
    // Resolves once every connection has ended; errors only say it was not listening.
    server.close(() => resolve())
  })

export const startServer = async (options: StartServerOptions): Promise<RunningServer> => {
  const { config } = options
  const write = options.log ?? (() => {})
  const log = (level: Exclude<LogLevel, "silent">, line: string) => {
    if (LEVELS[level] >= LEVELS[config.logLevel]) write(line)
  }

  const scope = container.createChildContainer()
  const storage = options.storage ?? storageFor(config, (line) => log("warn", line))
  registerEngine(scope, {
    storage,
    handlers: { default: demoHandler, ...options.handlers },
    config: { keyCacheTtlMs: config.keyCacheTtlMs }
  })
  const engine = engineFromContainer(scope)
  let worker: Worker.WorkerHandle | null = null
  let server: HttpServer | null = null

  const shutdown = async (): Promise<void> => {
    if (server !== null) log("info", "Shutting down: accepting no new connections.")
    const closed = server === null ? Promise.resolve() : closeHttp(server)
    server?.closeIdleConnections()
    try {
      if (worker !== null) {
        log("info", `Stopping the worker (up to ${config.shutdownGraceMs} ms for runs in flight).`)
        await worker.stop({ graceMs: config.shutdownGraceMs, releaseLeases: true })
      }
    } finally {
      // Open streams (SSE) never end by themselves: end them now that nothing new comes in.
      server?.closeAllConnections()
      await closed
      await engine.dispose({ graceMs: 0 })
      await scope.dispose()
    }
    if (server !== null) log("info", "Stopped.")
  }

  try {
    const where =
      options.storage === undefined
        ? describeStorage(config)
        : `${storage.name} (supplied in code; BATON_STORAGE is not used)`
    log("info", `Storage: ${where}.`)
    // Opened here rather than by the first request, so an unreachable database, a data directory in use
    // or a schema of the wrong version ends the start with its reason.
    try {
      await engine.ping()
    } catch (error) {
      throw new StorageStartError(`Storage ${where} failed to start: ${storageMessage(error)}`)
    }
    let createdKey: string | null = null
    if (config.bootstrapKey !== null) {
      const keyId = keyIdOf(config.bootstrapKey)
      try {
        await engine.run(Engine.ensureKey(config.bootstrapKey.reveal(), "default"))
      } catch (error) {
        // Storage errors go up as they are; only a key that exists otherwise is the operator's to fix.
        if (!isKeyRefused(error)) throw error
        throw new ConfigError([
          {
            variable: "BATON_BOOTSTRAP_KEY",
            message:
              `BATON_BOOTSTRAP_KEY names key ${keyId} which storage holds with another secret, revoked or ` +
              "expired; choose a new key id (the value is not shown)."
          }
        ])
      }
      log("info", `Bootstrap key ${keyId} ensured (BATON_BOOTSTRAP_KEY, customer default, all scopes).`)
    } else if (!(await hasUsableKey(engine))) {
      const issued = await engine.issueKey({ name: "bootstrap", scopes: ALL_SCOPES }, LOCAL_PRINCIPAL)
      createdKey = issued.key
      log("warn", `Created an API key (customer default, all scopes), shown this once: ${issued.key}`)
      log(
        "warn",
        (storage.name === "memory"
          ? "  The memory store starts empty, so every start creates a new key; "
          : "  Keep it safe; ") +
          "set BATON_BOOTSTRAP_KEY=key_id:secret for a key of your own that stays the same."
      )
    }

    if (config.workerConcurrency > 0) {
      worker = await engine.startWorker({
        concurrency: config.workerConcurrency,
        leaseMs: config.workerLeaseMs
      })
      log("info", `Worker ${worker.workerId} started (concurrency ${config.workerConcurrency}).`)
    } else log("info", "No worker (BATON_WORKER_CONCURRENCY=0): serving the API only.")

    // `healthRoutes` at the root and `batonRoutes` under /v1, plus the JSON error envelope for other paths.
    const app = batonApp(engine, {
      corsOrigins: config.corsOrigins,
      rateLimit: { perSecond: config.rateLimitPerSecond, burst: config.rateLimitBurst },
      sseMaxPerKey: config.sseMaxPerKey,
      // An open stream outlives its key's revocation by the cache TTL plus this interval: ≤ ~1 s together.
      sseKeyRecheckMs: Math.max(100, 1000 - config.keyCacheTtlMs)
    })
    server = await listen(app.fetch, config)
    const port = (server.address() as AddressInfo).port

    let closing: Promise<void> | null = null
    return {
      url: connectableUrl(config.host, port),
      port,
      engine,
      createdKey,
      close: () => {
        closing ??= shutdown()
        return closing
      }
    }
  } catch (error) {
    await shutdown().catch(() => {})
    throw error
  }
}
