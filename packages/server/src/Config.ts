/**
 * The server's configuration, read from environment variables (SPEC §8).
 * Every problem is reported at once, naming the variable and the expected
 * form; a secret value (the bootstrap key, the Postgres URL) is never
 * repeated back.
 */
import { resolve } from "node:path"
import { inspect } from "node:util"
import { SCHEMA_NAME } from "@baton/adapter-postgres"
import { PREFIX_PATTERN } from "@baton/adapter-redis"
import { parseKey } from "@baton/core"

/** Storage names this build can start. */
export type StorageName = "pglite" | "memory" | "postgres" | "redis" | "mongo"
/** Every name BATON_STORAGE accepts. */
export const STORAGE_NAMES: ReadonlyArray<StorageName> = ["pglite", "memory", "postgres", "redis", "mongo"]

export const POSTGRES_FEEDS = ["listen", "poll"] as const
export type PostgresFeed = (typeof POSTGRES_FEEDS)[number]

export const LOG_LEVELS = ["debug", "info", "warn", "error", "silent"] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/** A secret held in memory: `reveal()` gives it; logging or serialising it shows `[REDACTED]`. */
export class Secret {
  readonly #value: string
  constructor(value: string) {
    this.#value = value
  }
  reveal(): string {
    return this.#value
  }
  toString(): string {
    return "[REDACTED]"
  }
  toJSON(): string {
    return "[REDACTED]"
  }
  [inspect.custom](): string {
    return "Secret([REDACTED])"
  }
}

export interface ServerConfig {
  /** `PORT`: 0–65535 (0 = any free port); default 3000. */
  readonly port: number
  /** `HOST`: the address to listen on; default `0.0.0.0`. */
  readonly host: string
  /** `BATON_STORAGE`: default `pglite` (durable, embedded, in `dataDir`). */
  readonly storage: StorageName
  /** `BATON_DATA_DIR`, absolute: where PGlite keeps its files; default `.baton/data` in the working directory. */
  readonly dataDir: string
  /** The Postgres server's settings; set exactly when `storage` is `postgres`. */
  readonly postgres: PostgresConfig | null
  /** The Redis settings; null unless storage is redis. */
  readonly redis: RedisConfig | null
  /** The MongoDB settings; null unless storage is mongo. */
  readonly mongo: MongoConfig | null
  /**
   * `BATON_AUTO_MIGRATE`: apply pending schema migrations at start (default true). False only checks
   * the schema and refuses to start when it is behind, for deployments that run `baton migrate` apart.
   */
  readonly autoMigrate: boolean
  /** `BATON_BOOTSTRAP_KEY`: `key_id:secret` ensured at start; null = create one when storage has none. */
  readonly bootstrapKey: Secret | null
  /** `BATON_WORKER_CONCURRENCY`: runs executed at once; 0 = no worker (API only). Default 10. */
  readonly workerConcurrency: number
  /**
   * `BATON_WORKER_LEASE_MS`: how long a claimed run stays this worker's without a heartbeat; a
   * crashed worker's runs are taken over this long after its last heartbeat. Default 30 000.
   */
  readonly workerLeaseMs: number
  /** `BATON_CORS_ORIGINS`: browser origins allowed to call the API; default none (CORS off). */
  readonly corsOrigins: ReadonlyArray<string>
  /** `BATON_LOG_LEVEL`: default `info`. */
  readonly logLevel: LogLevel
  /**
   * `BATON_SHUTDOWN_GRACE_MS`: how long a shutdown lets in-flight runs go on before stopping them
   * and releasing their leases (default 10 000; 0 stops them at once).
   */
  readonly shutdownGraceMs: number
  /**
   * `BATON_KEY_CACHE_MS`: how long a verified key's record is reused without reading storage
   * (0 = every request reads it). A revocation on another process lands within this. Default 500.
   */
  readonly keyCacheTtlMs: number
  /** `BATON_RATE_LIMIT_PER_SECOND`: requests per second per API key (token refill); 0 = off. Default 100. */
  readonly rateLimitPerSecond: number
  /** `BATON_RATE_LIMIT_BURST`: requests a quiet key may send at once (bucket size). Default 200. */
  readonly rateLimitBurst: number
  /** `BATON_SSE_MAX_PER_KEY`: SSE streams one key holds open at once on this process; 0 = no cap. Default 100. */
  readonly sseMaxPerKey: number
}

export interface PostgresConfig {
  /** `BATON_POSTGRES_URL`: `postgres://user:password@host:port/database`; may carry a password. */
  readonly url: Secret
  /** `BATON_POSTGRES_SCHEMA`: the schema holding Baton's tables; default `baton`. */
  readonly schema: string
  /** `BATON_POSTGRES_FEED`: `listen` (default; LISTEN/NOTIFY) or `poll` (for transaction-pooling proxies). */
  readonly feed: PostgresFeed
  /** `BATON_POSTGRES_POOL_SIZE`: connections in the pool; null = the adapter's default (10). */
  readonly poolSize: number | null
  /** `BATON_POSTGRES_APPLICATION_NAME`: shown in `pg_stat_activity`; default `baton-server`. */
  readonly applicationName: string
}

export interface RedisConfig {
  /** `BATON_REDIS_URL`: `redis://[user:password@]host:port[/db]` or `rediss://…`; may carry a password. */
  readonly url: Secret
  /** `BATON_REDIS_PREFIX`: the namespace of every key; default `baton`. */
  readonly prefix: string
  /** `BATON_REDIS_REQUIRE_AOF`: refuse to start when Redis runs without AOF (default false: warn). */
  readonly requireAof: boolean
}

export const DEFAULT_REDIS_PREFIX = "baton"

export interface MongoConfig {
  /** `BATON_MONGO_URL`: `mongodb://…?replicaSet=…` or `mongodb+srv://…`; may carry a password. */
  readonly url: Secret
  /** `BATON_MONGO_DATABASE`: the database holding Baton's collections; null = the URL's, else `baton`. */
  readonly database: string | null
}

/** MongoDB database names: a plain subset of what MongoDB allows (no `/\\. "$`, at most 63 bytes). */
const MONGO_DATABASE = /^[A-Za-z0-9_-]{1,63}$/

export const DEFAULT_PORT = 3000
export const DEFAULT_HOST = "0.0.0.0"
export const DEFAULT_WORKER_CONCURRENCY = 10
/** The largest concurrency a worker can claim for (a claim's bound). */
export const MAX_WORKER_CONCURRENCY = 1000
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000
export const MAX_SHUTDOWN_GRACE_MS = 3_600_000
export const DEFAULT_WORKER_LEASE_MS = 30_000
export const MIN_WORKER_LEASE_MS = 1000
export const MAX_WORKER_LEASE_MS = 3_600_000
export const DEFAULT_POSTGRES_APPLICATION_NAME = "baton-server"
/** What Postgres keeps of an application_name: 63 bytes, printable ASCII here. */
const APPLICATION_NAME = /^[\x20-\x7e]{1,63}$/
export const DEFAULT_KEY_CACHE_TTL_MS = 500
/** Past one second a revocation would no longer reach every process within one second. */
export const MAX_KEY_CACHE_TTL_MS = 1000
export const DEFAULT_RATE_LIMIT_PER_SECOND = 100
export const DEFAULT_RATE_LIMIT_BURST = 200
export const MAX_RATE_LIMIT = 1_000_000
export const DEFAULT_SSE_MAX_PER_KEY = 100
export const MAX_SSE_MAX_PER_KEY = 100_000
/** Relative to the working directory (where `pnpm start` was typed). */
export const DEFAULT_DATA_DIR = ".baton/data"
export const DEFAULT_POSTGRES_SCHEMA = "baton"
export const MAX_POSTGRES_POOL_SIZE = 1000
const BOOLEANS: ReadonlyMap<string, boolean> = new Map([
  ["true", true],
  ["1", true],
  ["false", false],
  ["0", false]
])

export interface ConfigProblem {
  readonly variable: string
  readonly message: string
}

/** A configuration value is wrong. The message names each variable and never contains a secret. */
export class ConfigError extends Error {
  override readonly name = "ConfigError"
  readonly problems: ReadonlyArray<ConfigProblem>
  constructor(problems: ReadonlyArray<ConfigProblem>) {
    super(problems.map((p) => p.message).join("; "))
    this.problems = problems
  }
  /** The first variable at fault. */
  get variable(): string {
    return this.problems[0]?.variable ?? ""
  }
}

/**
 * `text` with the credentials of any URL in it (`//user:pass@`) masked: everything from `//` to the
 * last `@` before the next blank, since a password may hold an unencoded `/` or `@` (an `@` later in
 * the URL masks the host too, which is the safe side).
 */
export const maskCredentials = (text: string): string => text.replace(/\/\/\S*@/g, "//***@")

/** A non-secret value for messages: shortened, and any URL credentials (`//user:pass@`) masked. */
const shown = (value: string): string => {
  const masked = maskCredentials(value)
  return JSON.stringify(masked.length > 60 ? `${masked.slice(0, 57)}...` : masked)
}

/** Unset or blank counts as unset (env files often carry `NAME=`). */
const read = (env: NodeJS.ProcessEnv, name: string): string | undefined => {
  const value = env[name]
  return value === undefined || value.trim() === "" ? undefined : value.trim()
}

const parseInteger = (value: string): number | null => (/^\d{1,10}$/.test(value) ? Number(value) : null)

/** `scheme://host[:port]` with http or https, nothing after it. */
const isOrigin = (value: string): boolean => {
  if (!URL.canParse(value)) return false
  const url = new URL(value)
  return (url.protocol === "http:" || url.protocol === "https:") && url.origin === value.replace(/\/$/, "")
}

/**
 * Whether a value is a Postgres URL. Only the scheme is checked: the driver
 * accepts forms a WHATWG URL does not (a socket path with credentials and no host).
 */
const isPostgresUrl = (value: string): boolean => /^postgres(ql)?:\/\/\S*$/i.test(value)
const isMongoUrl = (value: string): boolean => /^mongodb(\+srv)?:\/\/\S+$/i.test(value)

/** Where a MongoDB URL points, for logs and messages: its hosts and database, never the password. */
export const describeMongoUrl = (url: Secret, database: string | null): string => {
  const match = /^mongodb(?:\+srv)?:\/\/(?:[^@/]*@)?([^/?]*)(?:\/([^?]*))?/i.exec(url.reveal())
  if (match === null) return "(a URL not shown)"
  const inUrl = match[2] === undefined || match[2] === "" ? "baton" : decodeURIComponent(match[2])
  return `${match[1]}/${database ?? inUrl}`
}

const isRedisUrl = (value: string): boolean => /^rediss?:\/\/\S*$/i.test(value) && URL.canParse(value)

/** Where a Redis URL points, for logs and messages: `host:port/db`, never the password. */
export const describeRedisUrl = (url: Secret): string => {
  const value = url.reveal()
  if (!URL.canParse(value)) return "(a URL not shown)"
  const { hostname, port, pathname } = new URL(value)
  const db = pathname.replace(/^\//, "")
  return `${hostname}:${port === "" ? "6379" : port}${db === "" ? "" : `/${db}`}`
}

/**
 * Where a Postgres URL points, for logs and messages: `host:port/database`,
 * never the user's password (nor the query string, which may carry one).
 */
export const describePostgresUrl = (url: Secret): string => {
  const value = url.reveal()
  if (!URL.canParse(value)) return "(a URL not shown)"
  const { hostname, port, pathname } = new URL(value)
  const database = decodeURIComponent(pathname.replace(/^\//, ""))
  return `${hostname === "" ? "(local socket)" : hostname}${port === "" ? "" : `:${port}`}/${database}`
}

/**
 * Reads the configuration from `env`. `cwd` is what a relative `BATON_DATA_DIR`
 * (and the default) resolves against: where the operator started the server.
 */
export const loadConfig = (env: NodeJS.ProcessEnv, cwd: string = process.cwd()): ServerConfig => {
  const problems: ConfigProblem[] = []
  const problem = (variable: string, message: string) => problems.push({ variable, message })

  let port = DEFAULT_PORT
  const rawPort = read(env, "PORT")
  if (rawPort !== undefined) {
    const n = parseInteger(rawPort)
    if (n === null || n > 65535)
      problem("PORT", `PORT must be an integer from 0 to 65535 (got ${shown(rawPort)}).`)
    else port = n
  }

  let host = DEFAULT_HOST
  const rawHost = read(env, "HOST")
  if (rawHost !== undefined) {
    if (/[\s/]/.test(rawHost))
      problem("HOST", `HOST must be a host name or IP address such as 0.0.0.0 (got ${shown(rawHost)}).`)
    else host = rawHost
  }

  let storage: StorageName = "pglite"
  const rawStorage = read(env, "BATON_STORAGE")
  if (rawStorage !== undefined) {
    const name = STORAGE_NAMES.find((n) => n === rawStorage.toLowerCase())
    if (name !== undefined) storage = name
    else
      problem(
        "BATON_STORAGE",
        `BATON_STORAGE must be one of ${STORAGE_NAMES.join(", ")} (got ${shown(rawStorage)}).`
      )
  }

  const rawDataDir = read(env, "BATON_DATA_DIR")
  const dataDir = resolve(cwd, rawDataDir ?? DEFAULT_DATA_DIR)

  // The Postgres variables are checked whenever they are set: a typo is worth hearing about before
  // the day BATON_STORAGE switches to postgres.
  const rawUrl = read(env, "BATON_POSTGRES_URL")
  let url: Secret | null = null
  if (rawUrl !== undefined) {
    if (!isPostgresUrl(rawUrl))
      // Never the value: it may hold a password.
      problem(
        "BATON_POSTGRES_URL",
        "BATON_POSTGRES_URL must be a URL such as postgres://user:password@host:5432/database " +
          "(the value is not shown)."
      )
    else url = new Secret(rawUrl)
  } else if (storage === "postgres")
    problem(
      "BATON_POSTGRES_URL",
      "BATON_POSTGRES_URL must be set when BATON_STORAGE=postgres, e.g. " +
        "postgres://user:password@host:5432/database."
    )
  if (rawUrl !== undefined && rawStorage === undefined)
    // Without this the server would quietly keep its data in PGlite while the operator looks in Postgres.
    problem(
      "BATON_STORAGE",
      "BATON_POSTGRES_URL is set but BATON_STORAGE is not: set BATON_STORAGE=postgres to use that database " +
        "(or BATON_STORAGE=pglite to keep the embedded store and ignore the URL)."
    )

  let schema = DEFAULT_POSTGRES_SCHEMA
  const rawSchema = read(env, "BATON_POSTGRES_SCHEMA")
  if (rawSchema !== undefined) {
    if (!SCHEMA_NAME.test(rawSchema))
      problem(
        "BATON_POSTGRES_SCHEMA",
        "BATON_POSTGRES_SCHEMA must be 1 to 48 lowercase letters, digits or _, not starting with a digit " +
          `nor pg_, and not information_schema (got ${shown(rawSchema)}).`
      )
    else schema = rawSchema
  }

  let feed: PostgresFeed = "listen"
  const rawFeed = read(env, "BATON_POSTGRES_FEED")
  if (rawFeed !== undefined) {
    const mode = POSTGRES_FEEDS.find((f) => f === rawFeed.toLowerCase())
    if (mode === undefined)
      problem(
        "BATON_POSTGRES_FEED",
        `BATON_POSTGRES_FEED must be listen (LISTEN/NOTIFY) or poll (for transaction-pooling proxies) (got ${shown(rawFeed)}).`
      )
    else feed = mode
  }

  let poolSize: number | null = null
  const rawPoolSize = read(env, "BATON_POSTGRES_POOL_SIZE")
  if (rawPoolSize !== undefined) {
    const n = parseInteger(rawPoolSize)
    if (n === null || n < 1 || n > MAX_POSTGRES_POOL_SIZE)
      problem(
        "BATON_POSTGRES_POOL_SIZE",
        `BATON_POSTGRES_POOL_SIZE must be an integer from 1 to ${MAX_POSTGRES_POOL_SIZE} (got ${shown(rawPoolSize)}).`
      )
    else poolSize = n
  }

  let autoMigrate = true
  const rawAutoMigrate = read(env, "BATON_AUTO_MIGRATE")
  if (rawAutoMigrate !== undefined) {
    const value = BOOLEANS.get(rawAutoMigrate.toLowerCase())
    if (value === undefined)
      problem(
        "BATON_AUTO_MIGRATE",
        `BATON_AUTO_MIGRATE must be true or false (false: run \`baton migrate\` yourself; got ${shown(rawAutoMigrate)}).`
      )
    else autoMigrate = value
  }

  // Like the Postgres variables, the Redis ones are checked whenever they are set.
  const rawRedisUrl = read(env, "BATON_REDIS_URL")
  let redisUrl: Secret | null = null
  if (rawRedisUrl !== undefined) {
    if (!isRedisUrl(rawRedisUrl))
      // Never the value: it may hold a password.
      problem(
        "BATON_REDIS_URL",
        "BATON_REDIS_URL must be a URL such as redis://:password@host:6379/0 or rediss://… (the value is not shown)."
      )
    else redisUrl = new Secret(rawRedisUrl)
  } else if (storage === "redis")
    problem(
      "BATON_REDIS_URL",
      "BATON_REDIS_URL must be set when BATON_STORAGE=redis, e.g. redis://:password@host:6379/0."
    )
  if (rawRedisUrl !== undefined && rawStorage === undefined)
    problem(
      "BATON_STORAGE",
      "BATON_REDIS_URL is set but BATON_STORAGE is not: set BATON_STORAGE=redis to use that server " +
        "(or BATON_STORAGE=pglite to keep the embedded store and ignore the URL)."
    )

  let redisPrefix = DEFAULT_REDIS_PREFIX
  const rawPrefix = read(env, "BATON_REDIS_PREFIX")
  if (rawPrefix !== undefined) {
    if (!PREFIX_PATTERN.test(rawPrefix))
      problem(
        "BATON_REDIS_PREFIX",
        `BATON_REDIS_PREFIX must be 1 to 64 letters, digits or _.:- characters (got ${shown(rawPrefix)}).`
      )
    else redisPrefix = rawPrefix
  }

  let requireAof = false
  const rawRequireAof = read(env, "BATON_REDIS_REQUIRE_AOF")
  if (rawRequireAof !== undefined) {
    const value = BOOLEANS.get(rawRequireAof.toLowerCase())
    if (value === undefined)
      problem(
        "BATON_REDIS_REQUIRE_AOF",
        `BATON_REDIS_REQUIRE_AOF must be true or false (got ${shown(rawRequireAof)}).`
      )
    else requireAof = value
  }

  const rawMongoUrl = read(env, "BATON_MONGO_URL")
  let mongoUrl: Secret | null = null
  if (rawMongoUrl !== undefined) {
    if (!isMongoUrl(rawMongoUrl))
      // Never the value: it may hold a password.
      problem(
        "BATON_MONGO_URL",
        "BATON_MONGO_URL must be a URL such as mongodb://user:password@host:27017/baton?replicaSet=rs0 " +
          "or mongodb+srv://… (the value is not shown)."
      )
    else mongoUrl = new Secret(rawMongoUrl)
  } else if (storage === "mongo")
    problem(
      "BATON_MONGO_URL",
      "BATON_MONGO_URL must be set when BATON_STORAGE=mongo, e.g. mongodb://host:27017/baton?replicaSet=rs0."
    )
  if (rawMongoUrl !== undefined && rawStorage === undefined)
    problem(
      "BATON_STORAGE",
      "BATON_MONGO_URL is set but BATON_STORAGE is not: set BATON_STORAGE=mongo to use that server " +
        "(or BATON_STORAGE=pglite to keep the embedded store and ignore the URL)."
    )

  let mongoDatabase: string | null = null
  const rawMongoDatabase = read(env, "BATON_MONGO_DATABASE")
  if (rawMongoDatabase !== undefined) {
    if (!MONGO_DATABASE.test(rawMongoDatabase))
      problem(
        "BATON_MONGO_DATABASE",
        `BATON_MONGO_DATABASE must be 1 to 63 letters, digits, _ or - (got ${shown(rawMongoDatabase)}).`
      )
    else mongoDatabase = rawMongoDatabase
  }

  let bootstrapKey: Secret | null = null
  const rawKey = read(env, "BATON_BOOTSTRAP_KEY")
  if (rawKey !== undefined) {
    if (parseKey(rawKey) === null)
      // Never the value: it is (or is close to) a secret.
      problem(
        "BATON_BOOTSTRAP_KEY",
        "BATON_BOOTSTRAP_KEY must be key_id:secret, where key_id is key_ followed by 8 to 64 letters or " +
          "digits and secret is 16 to 128 characters from A-Z a-z 0-9 _ - (the value is not shown)."
      )
    else bootstrapKey = new Secret(rawKey)
  }

  let workerConcurrency = DEFAULT_WORKER_CONCURRENCY
  const rawConcurrency = read(env, "BATON_WORKER_CONCURRENCY")
  if (rawConcurrency !== undefined) {
    const n = parseInteger(rawConcurrency)
    if (n === null || n > MAX_WORKER_CONCURRENCY)
      problem(
        "BATON_WORKER_CONCURRENCY",
        `BATON_WORKER_CONCURRENCY must be an integer from 0 (no worker: API only) to ${MAX_WORKER_CONCURRENCY} (got ${shown(rawConcurrency)}).`
      )
    else workerConcurrency = n
  }

  let workerLeaseMs = DEFAULT_WORKER_LEASE_MS
  const rawLease = read(env, "BATON_WORKER_LEASE_MS")
  if (rawLease !== undefined) {
    const n = parseInteger(rawLease)
    if (n === null || n < MIN_WORKER_LEASE_MS || n > MAX_WORKER_LEASE_MS)
      problem(
        "BATON_WORKER_LEASE_MS",
        `BATON_WORKER_LEASE_MS must be an integer from ${MIN_WORKER_LEASE_MS} to ${MAX_WORKER_LEASE_MS} milliseconds (got ${shown(rawLease)}).`
      )
    else workerLeaseMs = n
  }

  let shutdownGraceMs = DEFAULT_SHUTDOWN_GRACE_MS
  const rawGrace = read(env, "BATON_SHUTDOWN_GRACE_MS")
  if (rawGrace !== undefined) {
    const n = parseInteger(rawGrace)
    if (n === null || n > MAX_SHUTDOWN_GRACE_MS)
      problem(
        "BATON_SHUTDOWN_GRACE_MS",
        `BATON_SHUTDOWN_GRACE_MS must be an integer from 0 to ${MAX_SHUTDOWN_GRACE_MS} milliseconds (got ${shown(rawGrace)}).`
      )
    else shutdownGraceMs = n
  }

  /** An integer variable from `min` to `max`, else a problem naming it and what it means. */
  const integer = (name: string, fallback: number, min: number, max: number, meaning: string): number => {
    const raw = read(env, name)
    if (raw === undefined) return fallback
    const n = parseInteger(raw)
    if (n !== null && n >= min && n <= max) return n
    problem(name, `${name} must be an integer from ${min} to ${max} ${meaning} (got ${shown(raw)}).`)
    return fallback
  }
  const keyCacheTtlMs = integer(
    "BATON_KEY_CACHE_MS",
    DEFAULT_KEY_CACHE_TTL_MS,
    0,
    MAX_KEY_CACHE_TTL_MS,
    "milliseconds (0 = no key cache)"
  )
  const rateLimitPerSecond = integer(
    "BATON_RATE_LIMIT_PER_SECOND",
    DEFAULT_RATE_LIMIT_PER_SECOND,
    0,
    MAX_RATE_LIMIT,
    "requests per second per key (0 = no rate limit)"
  )
  const rateLimitBurst = integer(
    "BATON_RATE_LIMIT_BURST",
    DEFAULT_RATE_LIMIT_BURST,
    1,
    MAX_RATE_LIMIT,
    "requests a key may send at once"
  )
  const sseMaxPerKey = integer(
    "BATON_SSE_MAX_PER_KEY",
    DEFAULT_SSE_MAX_PER_KEY,
    0,
    MAX_SSE_MAX_PER_KEY,
    "open streams per key (0 = no cap)"
  )

  let applicationName = DEFAULT_POSTGRES_APPLICATION_NAME
  const rawApplicationName = read(env, "BATON_POSTGRES_APPLICATION_NAME")
  if (rawApplicationName !== undefined) {
    if (!APPLICATION_NAME.test(rawApplicationName))
      problem(
        "BATON_POSTGRES_APPLICATION_NAME",
        `BATON_POSTGRES_APPLICATION_NAME must be 1 to 63 printable ASCII characters (got ${shown(rawApplicationName)}).`
      )
    else applicationName = rawApplicationName
  }

  let corsOrigins: ReadonlyArray<string> = []
  const rawOrigins = read(env, "BATON_CORS_ORIGINS")
  if (rawOrigins !== undefined) {
    const origins = rawOrigins
      .split(",")
      .map((o) => o.trim())
      .filter((o) => o !== "")
    const bad = origins.filter((o) => !isOrigin(o))
    if (bad.length > 0)
      problem(
        "BATON_CORS_ORIGINS",
        "BATON_CORS_ORIGINS must be a comma-separated list of origins such as " +
          `https://app.example.com,http://localhost:5173 (scheme://host[:port], no path; got ${bad.map(shown).join(", ")}).`
      )
    else corsOrigins = [...new Set(origins.map((o) => o.replace(/\/$/, "")))]
  }

  let logLevel: LogLevel = "info"
  const rawLevel = read(env, "BATON_LOG_LEVEL")
  if (rawLevel !== undefined) {
    const level = LOG_LEVELS.find((l) => l === rawLevel.toLowerCase())
    if (level === undefined)
      problem(
        "BATON_LOG_LEVEL",
        `BATON_LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")} (got ${shown(rawLevel)}).`
      )
    else logLevel = level
  }

  if (problems.length > 0) throw new ConfigError(problems)
  return {
    port,
    host,
    storage,
    dataDir,
    postgres:
      storage === "postgres" && url !== null ? { url, schema, feed, poolSize, applicationName } : null,
    redis:
      storage === "redis" && redisUrl !== null ? { url: redisUrl, prefix: redisPrefix, requireAof } : null,
    mongo: storage === "mongo" && mongoUrl !== null ? { url: mongoUrl, database: mongoDatabase } : null,
    autoMigrate,
    bootstrapKey,
    workerConcurrency,
    workerLeaseMs,
    corsOrigins,
    logLevel,
    shutdownGraceMs,
    keyCacheTtlMs,
    rateLimitPerSecond,
    rateLimitBurst,
    sseMaxPerKey
  }
}

/** The key id of a `key_id:secret` (public, safe to log); null when malformed. */
export const keyIdOf = (key: Secret): string | null => parseKey(key.reveal())?.keyId ?? null
