/**
 * `redisStorage(options)`: the adapter value handed to `createEngine`. Its
 * Layer is scoped: it opens a command connection and a pub/sub connection,
 * probes both with a timeout (a bad URL fails fast with a clear
 * StorageError), checks the server's persistence settings, and closes both
 * with the engine.
 */
import { EventFeed, KeyStore, RunStore, type StorageAdapter, storageUnavailable } from "@baton/core"
import { Context, Effect, Layer } from "effect"
import type { Cluster, Redis } from "ioredis"
import {
  type ConnectionSettings,
  masters,
  openCommandClient,
  openSubscriberClient
} from "./internal/Connections.js"
import { checkDurability } from "./internal/Durability.js"
import { makeIndexes } from "./internal/Indexes.js"
import { keyLayout, PREFIX_PATTERN } from "./internal/Keys.js"
import { defineScripts } from "./internal/Scripts.js"
import { makeRedisEventFeed } from "./RedisEventFeed.js"
import { makeRedisKeyStore } from "./RedisKeyStore.js"
import { makeRedisRunStore } from "./RedisRunStore.js"

export interface RedisRetention {
  /** Finished runs and their events expire this long after reaching a terminal status (default: kept). */
  readonly finishedRunTtlMs?: number
  /**
   * An idempotency key lives in Redis until its record's `expires_at` plus this
   * margin (default 60 s, for clock skew between engines); it stops counting at
   * `expires_at` either way. The lifetime itself is the engine's
   * `idempotencyTtlMs` (default 24 h).
   */
  readonly idempotencyGraceMs?: number
}

export interface RedisStorageOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` (default `redis://127.0.0.1:6379`). */
  readonly url?: string
  /** Seed nodes of a Redis Cluster; the adapter discovers the rest. */
  readonly cluster?: ReadonlyArray<{ readonly host: string; readonly port: number }>
  /** A connection you own (standalone or cluster): used, never closed, by the adapter. */
  readonly client?: Redis | Cluster
  /**
   * Namespace of every key (letters, digits, `_.:-`; default `baton`). Deployments
   * sharing one Redis need prefixes where neither is the other followed by `:`.
   */
  readonly prefix?: string
  /** Refuse to start when a master runs without AOF, or when that cannot be determined (default: warn). */
  readonly requireAof?: boolean
  readonly retention?: RedisRetention
  /** CLIENT SETNAME of the adapter's connections (default `baton`; the feed's gets `:feed`). */
  readonly connectionName?: string
  /** Connect-and-probe deadline at start (default 5 s). */
  readonly connectTimeoutMs?: number
  /** A command without a reply after this long fails with a StorageError (default 10 s). */
  readonly commandTimeoutMs?: number
  /** Where start-up warnings go (default console.warn). */
  readonly log?: (message: string) => void
}

export const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
const DEFAULT_IDEMPOTENCY_GRACE_MS = 60_000

const positive = (value: number | undefined, fallback: number | null): number | null =>
  value !== undefined && Number.isFinite(value) && value > 0 ? Math.floor(value) : fallback

export const redisStorage = (options: RedisStorageOptions = {}): StorageAdapter => {
  const layer = Layer.scopedContext(
    Effect.gen(function* () {
      const prefix = options.prefix ?? "baton"
      if (!PREFIX_PATTERN.test(prefix))
        return yield* Effect.fail(
          storageUnavailable("The Redis key prefix must be 1-64 letters, digits or _.:- characters.")
        )
      const settings: ConnectionSettings = {
        url: options.url ?? DEFAULT_REDIS_URL,
        cluster: options.cluster ?? null,
        client: options.client ?? null,
        connectionName: options.connectionName ?? "baton",
        connectTimeoutMs: positive(options.connectTimeoutMs, 5_000)!,
        commandTimeoutMs: positive(options.commandTimeoutMs, 10_000)!
      }
      const log = options.log ?? ((message: string) => console.warn(message))
      const client = yield* openCommandClient(settings)
      yield* checkDurability(masters(client), options.requireAof === true, log)
      const subscriber = yield* openSubscriberClient(settings, client)
      const keys = keyLayout(prefix)
      const scripts = defineScripts(client)
      const runStore = makeRedisRunStore({
        client,
        keys,
        scripts,
        indexes: makeIndexes(keys, scripts),
        finishedRunTtlMs: positive(options.retention?.finishedRunTtlMs, null),
        idempotencyGraceMs:
          options.retention?.idempotencyGraceMs !== undefined && options.retention.idempotencyGraceMs >= 0
            ? Math.floor(options.retention.idempotencyGraceMs)
            : DEFAULT_IDEMPOTENCY_GRACE_MS
      })
      return Context.make(RunStore, RunStore.makeEncoded(runStore)).pipe(
        Context.add(EventFeed, makeRedisEventFeed(subscriber, client, keys)),
        Context.add(KeyStore, KeyStore.makeEncoded(makeRedisKeyStore(client, keys, scripts)))
      )
    })
  )
  return { name: "redis", layer }
}
