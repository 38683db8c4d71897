/**
 * The store named by the configuration: building its adapter, saying where it
 * is without a secret, and `baton migrate`, which brings its schema up to date
 * apart from a start.
 */
import { memoryStorage } from "@baton/adapter-memory"
import { mongoStorage } from "@baton/adapter-mongo"
import {
  DataDirError,
  DataDirInUseError,
  DEFAULT_SCHEMA,
  type MigrateResult,
  makePgliteExecutor,
  migrate,
  migratePostgres,
  pgliteStorage,
  postgresStorage,
  SchemaVersionError
} from "@baton/adapter-postgres"
import { redisStorage } from "@baton/adapter-redis"
import type { StorageAdapter } from "@baton/core"
import {
  describeMongoUrl,
  describePostgresUrl,
  describeRedisUrl,
  type MongoConfig,
  type PostgresConfig,
  type RedisConfig,
  type ServerConfig
} from "./Config.js"

/** The Postgres settings of a config whose storage is postgres (loadConfig guarantees them). */
const postgresOf = (config: ServerConfig): PostgresConfig => {
  if (config.postgres === null) throw new Error("BATON_STORAGE=postgres needs BATON_POSTGRES_URL.")
  return config.postgres
}

/** The Redis settings of a config whose storage is redis (loadConfig guarantees them). */
const redisOf = (config: ServerConfig): RedisConfig => {
  if (config.redis === null) throw new Error("BATON_STORAGE=redis needs BATON_REDIS_URL.")
  return config.redis
}

/** The MongoDB settings of a config whose storage is mongo (loadConfig guarantees them). */
const mongoOf = (config: ServerConfig): MongoConfig => {
  if (config.mongo === null) throw new Error("BATON_STORAGE=mongo needs BATON_MONGO_URL.")
  return config.mongo
}

/** The configured store, for a log line: its name and where it is, never a password. */
export const describeStorage = (config: ServerConfig): string => {
  switch (config.storage) {
    case "memory":
      return "memory (in this process; nothing is kept after it exits)"
    case "pglite":
      return `pglite (data dir ${config.dataDir})`
    case "postgres": {
      const postgres = postgresOf(config)
      return `postgres (${describePostgresUrl(postgres.url)}, schema ${postgres.schema})`
    }
    case "redis": {
      const redis = redisOf(config)
      return `redis (${describeRedisUrl(redis.url)}, prefix ${redis.prefix})`
    }
    case "mongo": {
      const mongo = mongoOf(config)
      return `mongo (${describeMongoUrl(mongo.url, mongo.database)})`
    }
  }
}

/**
 * The adapter for `config.storage`. It opens nothing yet: the engine opens it on first use.
 * `warn` receives the adapter's start-up warnings (Redis without AOF).
 */
export const storageFor = (
  config: ServerConfig,
  warn: (line: string) => void = console.warn
): StorageAdapter => {
  switch (config.storage) {
    case "memory":
      return memoryStorage()
    case "pglite":
      return pgliteStorage({ dataDir: config.dataDir, migrate: config.autoMigrate })
    case "postgres": {
      const postgres = postgresOf(config)
      return postgresStorage({
        url: postgres.url.reveal(),
        schema: postgres.schema,
        feed: postgres.feed,
        migrate: config.autoMigrate,
        applicationName: postgres.applicationName,
        ...(postgres.poolSize === null ? {} : { poolSize: postgres.poolSize })
      })
    }
    case "redis": {
      const redis = redisOf(config)
      return redisStorage({
        url: redis.url.reveal(),
        prefix: redis.prefix,
        requireAof: redis.requireAof,
        log: warn
      })
    }
    case "mongo": {
      const mongo = mongoOf(config)
      return mongoStorage({
        url: mongo.url.reveal(),
        ...(mongo.database === null ? {} : { database: mongo.database })
      })
    }
  }
}

/** The store could not be opened: unreachable, in use, or at a schema version this Baton cannot use. */
export class StorageStartError extends Error {
  override readonly name = "StorageStartError"
}

// SQLSTATEs an operator meets when pointing Baton at a database for the first time.
const SQLSTATE_MEANINGS: ReadonlyMap<string, string> = new Map([
  ["28P01", "password authentication failed"],
  ["28000", "the server refused this user or host"],
  ["3D000", "the database does not exist"],
  ["42501", "permission denied (the user may not create the schema or its tables)"]
])

/**
 * A one-line reason for a failed migration. Operator-facing errors keep their
 * message; anything else is named by its code only, since a driver message may
 * quote SQL.
 */
const migrateFailure = (error: unknown): string => {
  if (
    error instanceof SchemaVersionError ||
    error instanceof DataDirInUseError ||
    error instanceof DataDirError
  )
    return error.message
  const code = typeof error === "object" && error !== null ? (error as { code?: unknown }).code : undefined
  if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code))
    return `the database refused (SQLSTATE ${code}${SQLSTATE_MEANINGS.has(code) ? `: ${SQLSTATE_MEANINGS.get(code)}` : ""}).`
  if (typeof code === "string" && /^E[A-Z]+$/.test(code))
    return `the database could not be reached (${code}).`
  if (error instanceof Error && /timeout/i.test(error.message)) return "the connection timed out."
  return "the migration failed."
}

export interface MigrationReport extends MigrateResult {
  /** What was migrated, as `describeStorage` says it. */
  readonly target: string
}

/** Applies the pending migrations of the configured store (`baton migrate`); throws `StorageStartError`. */
export const migrateStorage = async (config: ServerConfig): Promise<MigrationReport> => {
  const target = describeStorage(config)
  try {
    switch (config.storage) {
      case "memory":
      case "redis":
      case "mongo":
        // Nothing persists in memory; Redis keys need no schema; Mongo's indexes are made at every start.
        return { target, from: 0, to: 0, applied: [] }
      case "pglite": {
        const db = await makePgliteExecutor({ dataDir: config.dataDir })
        try {
          return { target, ...(await migrate(db, DEFAULT_SCHEMA)) }
        } finally {
          await db.close()
        }
      }
      case "postgres": {
        const postgres = postgresOf(config)
        return { target, ...(await migratePostgres({ url: postgres.url.reveal(), schema: postgres.schema })) }
      }
    }
  } catch (error) {
    throw new StorageStartError(`Could not migrate ${target}: ${migrateFailure(error)}`)
  }
}
