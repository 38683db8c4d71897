/**
 * Baton as a contender: an engine over a fresh Postgres schema or Redis key
 * prefix, with the scenario's handlers, torn down (and its data dropped)
 * after the round.
 */
import { postgresStorage } from "@baton/adapter-postgres"
import { type AnyHandler, type BatonEngine, createEngine, type StorageAdapter } from "@baton/core"
import { dropRedisPrefix, dropSchema, freshName } from "./Services.js"

export type Backend = "postgres" | "redis"

export interface BatonInstance {
  readonly engine: BatonEngine
  readonly backend: Backend
  /** The Postgres schema or the Redis key prefix holding this instance's data. */
  readonly namespace: string
  /** Stops workers at once, closes connections, drops the data. */
  readonly close: () => Promise<void>
}

export interface BatonSetup {
  readonly backend: Backend
  readonly url: string
  readonly handlers: Readonly<Record<string, AnyHandler>>
  /** Postgres pool connections (default 10, the adapter's default). */
  readonly poolSize?: number
  /**
   * Joins the data of an instance already started (another process, as far as the store can
   * tell); closing this one then leaves the data to the first. Default: a fresh namespace.
   */
  readonly joinNamespace?: string
}

type RedisModule = { readonly redisStorage: (options: Record<string, unknown>) => StorageAdapter }

/**
 * The Redis adapter is being written alongside the bench: it is loaded on
 * demand, and a module that does not load or export `redisStorage` makes the
 * Redis variants report "adapter not available" instead of failing the bench.
 */
export const loadRedisAdapter = async (): Promise<RedisModule | string> => {
  try {
    const module: Partial<RedisModule> = await import("@baton/adapter-redis")
    return typeof module.redisStorage === "function"
      ? (module as RedisModule)
      : "@baton/adapter-redis exports no redisStorage"
  } catch (error) {
    return `@baton/adapter-redis does not load: ${error instanceof Error ? error.message : String(error)}`
  }
}

export const startBaton = async (setup: BatonSetup): Promise<BatonInstance> => {
  const namespace = setup.joinNamespace ?? freshName("baton")
  const owned = setup.joinNamespace === undefined
  let storage: StorageAdapter
  let dropData: () => Promise<void>
  if (setup.backend === "postgres") {
    storage = postgresStorage({ url: setup.url, schema: namespace, poolSize: setup.poolSize ?? 10 })
    dropData = () => dropSchema(setup.url, namespace)
  } else {
    const adapter = await loadRedisAdapter()
    if (typeof adapter === "string") throw new Error(adapter)
    storage = adapter.redisStorage({ url: setup.url, prefix: namespace, log: () => {} })
    dropData = () => dropRedisPrefix(setup.url, namespace)
  }
  const drop = owned ? dropData : async () => {}
  const engine = createEngine({ storage, handlers: setup.handlers })
  try {
    // Opens the store and migrates now, so no round measures the start-up.
    await engine.ping()
  } catch (error) {
    await engine.dispose({ graceMs: 0 }).catch(() => {})
    await drop().catch(() => {})
    throw error
  }
  return {
    engine,
    backend: setup.backend,
    namespace,
    close: async () => {
      await engine.dispose({ graceMs: 0 })
      await drop()
    }
  }
}
