/**
 * The storage adapters: `postgresStorage` over a Postgres server (pg.Pool),
 * `pgliteStorage` over PGlite in a data directory. Both run the same SQL
 * through the executor seam; their Layers open the store, migrate (or check)
 * the schema, start the feed, and close all of it with the engine.
 */
import {
  EventFeed,
  KeyStore,
  RunStore,
  type StorageAdapter,
  type StorageError,
  storageUnavailable
} from "@baton/core"
import { Context, Effect, Layer } from "effect"
import { DataDirError, DataDirInUseError } from "./DataDirLock.js"
import type { SqlExecutor } from "./Executor.js"
import { checkSchema, type MigrateResult, migrate, SCHEMA_NAME, SchemaVersionError } from "./Migrate.js"
import { makePgliteExecutor } from "./PgliteExecutor.js"
import { makePgPoolExecutor } from "./PgPoolExecutor.js"
import { type FeedMode, makeEventFeed } from "./PostgresEventFeed.js"
import { makeKeyStore } from "./PostgresKeyStore.js"
import { makeRunStore } from "./PostgresRunStore.js"
import { makeStatements } from "./Statements.js"
import { toStorageError } from "./StorageErrors.js"

export const DEFAULT_SCHEMA = "baton"

interface CommonOptions {
  /** The Postgres schema holding Baton's tables (default `baton`); lowercase letters, digits and `_`. */
  readonly schema?: string
  /**
   * Apply pending migrations at start (default true). With false the adapter
   * only checks the schema is current, for deployments that run `baton migrate` apart.
   */
  readonly migrate?: boolean
  /** How often subscribed runs are polled for new events when LISTEN is not in use (default 250). */
  readonly pollIntervalMs?: number
}

export interface PostgresStorageOptions extends CommonOptions {
  /** `postgres://user:password@host:port/database`. */
  readonly url: string
  /** Pool connections (default 10); the feed holds one more. */
  readonly poolSize?: number
  /** How long one statement may take before the call fails as unavailable (default 30 000). */
  readonly queryTimeoutMs?: number
  readonly applicationName?: string
  /**
   * `listen` (default): LISTEN/NOTIFY hints, polling only while the LISTEN
   * connection is down. `poll`: no LISTEN and no NOTIFY, for transaction-pooling proxies.
   */
  readonly feed?: FeedMode
}

export interface PgliteStorageOptions extends CommonOptions {
  /** Where PGlite keeps its files (created when missing); one process at a time. */
  readonly dataDir: string
}

const IDEMPOTENCY_PURGE_MS = 60_000
const IDEMPOTENCY_PURGE_BATCH = 1000
/** Batches per tick at most: up to a million expired records a minute, never a long hold. */
const IDEMPOTENCY_PURGE_BATCHES = 1000
/**
 * Records are purged an hour after they expire by this process's clock: a key is live by the
 * engine's clock, so a host whose clock runs ahead must not drop keys that still count.
 */
const IDEMPOTENCY_PURGE_MARGIN_MS = 3_600_000

const purgeExpiredKeys = async (db: SqlExecutor, st: ReturnType<typeof makeStatements>): Promise<void> => {
  const before = Date.now() - IDEMPOTENCY_PURGE_MARGIN_MS
  for (let batch = 0; batch < IDEMPOTENCY_PURGE_BATCHES; batch++) {
    const deleted = await db.query(st.purgeExpiredKeys, [before, IDEMPOTENCY_PURGE_BATCH])
    if (deleted.length < IDEMPOTENCY_PURGE_BATCH) return
  }
}

const schemaOf = (options: CommonOptions): string => {
  const schema = options.schema ?? DEFAULT_SCHEMA
  if (!SCHEMA_NAME.test(schema))
    throw new TypeError(`schema must match ${SCHEMA_NAME.source} (got ${JSON.stringify(schema)})`)
  return schema
}

/** Start failures whose message is written for operators pass through; database errors are mapped. */
const startError = (cause: unknown): StorageError =>
  cause instanceof SchemaVersionError || cause instanceof DataDirInUseError || cause instanceof DataDirError
    ? storageUnavailable(cause.message)
    : toStorageError(cause)

interface LayerSettings {
  readonly schema: string
  readonly migrate: boolean
  readonly feed: FeedMode
  readonly pollIntervalMs: number
}

/** `owned`: the layer opened the executor, so it closes it too. */
const storageLayer = (open: () => Promise<SqlExecutor>, owned: boolean, settings: LayerSettings) =>
  Layer.scopedContext(
    Effect.gen(function* () {
      const db = yield* Effect.acquireRelease(Effect.tryPromise({ try: open, catch: startError }), (db) =>
        owned ? Effect.promise(() => db.close()) : Effect.void
      )
      yield* Effect.tryPromise({
        try: async () => {
          if (settings.migrate) await migrate(db, settings.schema)
          else await checkSchema(db, settings.schema)
        },
        catch: startError
      })
      const st = makeStatements(settings.schema)
      const channel = `${settings.schema}_events`
      const feed = makeEventFeed(db, st, {
        mode: settings.feed,
        channel,
        pollIntervalMs: settings.pollIntervalMs
      })
      yield* Effect.acquireRelease(Effect.tryPromise({ try: feed.start, catch: startError }), () =>
        Effect.promise(feed.stop)
      )
      // Expired idempotency records are dead weight: dropped in small batches now and then.
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          let purging = false
          const timer = setInterval(() => {
            if (purging) return
            purging = true
            purgeExpiredKeys(db, st)
              .catch(() => {})
              .finally(() => {
                purging = false
              })
          }, IDEMPOTENCY_PURGE_MS)
          timer.unref()
          return timer
        }),
        (timer) => Effect.sync(() => clearInterval(timer))
      )
      const runStore = makeRunStore(db, st, { notify: settings.feed === "listen", channel })
      return Context.make(RunStore, RunStore.makeEncoded(runStore)).pipe(
        Context.add(EventFeed, feed.feed),
        Context.add(KeyStore, KeyStore.makeEncoded(makeKeyStore(db, st)))
      )
    })
  )

/** Baton on a Postgres server. */
export const postgresStorage = (options: PostgresStorageOptions): StorageAdapter => {
  const schema = schemaOf(options)
  return {
    name: "postgres",
    layer: storageLayer(
      async () =>
        makePgPoolExecutor({
          connectionString: options.url,
          ...(options.poolSize === undefined ? {} : { max: options.poolSize }),
          ...(options.applicationName === undefined ? {} : { applicationName: options.applicationName }),
          ...(options.queryTimeoutMs === undefined ? {} : { queryTimeoutMs: options.queryTimeoutMs })
        }),
      true,
      {
        schema,
        migrate: options.migrate ?? true,
        feed: options.feed ?? "listen",
        pollIntervalMs: options.pollIntervalMs ?? 250
      }
    )
  }
}

/** Baton on PGlite: Postgres in this process, durable in `dataDir`. The embedded default. */
export const pgliteStorage = (options: PgliteStorageOptions): StorageAdapter => {
  const schema = schemaOf(options)
  return {
    name: "pglite",
    layer: storageLayer(() => makePgliteExecutor({ dataDir: options.dataDir }), true, {
      schema,
      migrate: options.migrate ?? true,
      // In-process notifications are never lost; the poller only runs if LISTEN ever stops.
      feed: "listen",
      pollIntervalMs: options.pollIntervalMs ?? 250
    })
  }
}

export interface SqlStorageOptions extends CommonOptions {
  /** The adapter's name in logs (default `postgres`). */
  readonly name?: string
  /** As for `postgresStorage`; PGlite executors always deliver notifications. */
  readonly feed?: FeedMode
}

/**
 * Baton on an executor opened by the caller (`makePgPoolExecutor`,
 * `makePgliteExecutor`, or one of your own over the same SQL): the engine
 * uses it and leaves closing it to the caller.
 */
export const sqlStorage = (executor: SqlExecutor, options: SqlStorageOptions = {}): StorageAdapter => {
  const schema = schemaOf(options)
  return {
    name: options.name ?? "postgres",
    layer: storageLayer(async () => executor, false, {
      schema,
      migrate: options.migrate ?? true,
      feed: options.feed ?? "listen",
      pollIntervalMs: options.pollIntervalMs ?? 250
    })
  }
}

/** Applies pending migrations to a Postgres server and closes (`baton migrate`). */
export const migratePostgres = async (options: {
  readonly url: string
  readonly schema?: string
}): Promise<MigrateResult> => {
  const schema = schemaOf(options)
  const db = makePgPoolExecutor({ connectionString: options.url, max: 1 })
  try {
    return await migrate(db, schema)
  } finally {
    await db.close()
  }
}
