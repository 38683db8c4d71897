import { resolve } from "node:path"
import { inspect } from "node:util"
import { describe, expect, it } from "vitest"
import {
  ConfigError,
  describeMongoUrl,
  describePostgresUrl,
  describeRedisUrl,
  loadConfig,
  maskCredentials,
  Secret
} from "../src/Config.js"

const KEY = "key_bootstrap0001:s3cr3t-s3cr3t-s3cr3t-abcdef"
const PG_PASSWORD = "hunter2-pg-password"
const PG_URL = `postgres://baton:${PG_PASSWORD}@db.internal:5433/baton_prod?sslmode=require`

const failure = (env: NodeJS.ProcessEnv): ConfigError => {
  try {
    loadConfig(env)
  } catch (error) {
    if (error instanceof ConfigError) return error
    throw error
  }
  throw new Error("expected a ConfigError")
}

describe("loadConfig", () => {
  it("has defaults for everything", () => {
    expect(loadConfig({}, "/srv/app")).toEqual({
      port: 3000,
      host: "0.0.0.0",
      storage: "pglite",
      dataDir: "/srv/app/.baton/data",
      postgres: null,
      redis: null,
      mongo: null,
      autoMigrate: true,
      bootstrapKey: null,
      workerConcurrency: 10,
      workerLeaseMs: 30_000,
      corsOrigins: [],
      logLevel: "info",
      shutdownGraceMs: 10_000,
      keyCacheTtlMs: 500,
      rateLimitPerSecond: 100,
      rateLimitBurst: 200,
      sseMaxPerKey: 100
    })
  })

  it("reads the key cache, rate limit and stream cap, 0 turning each off", () => {
    expect(
      loadConfig({
        BATON_KEY_CACHE_MS: "250",
        BATON_RATE_LIMIT_PER_SECOND: "5",
        BATON_RATE_LIMIT_BURST: "7",
        BATON_SSE_MAX_PER_KEY: "3"
      })
    ).toMatchObject({ keyCacheTtlMs: 250, rateLimitPerSecond: 5, rateLimitBurst: 7, sseMaxPerKey: 3 })
    expect(
      loadConfig({ BATON_KEY_CACHE_MS: "0", BATON_RATE_LIMIT_PER_SECOND: "0", BATON_SSE_MAX_PER_KEY: "0" })
    ).toMatchObject({ keyCacheTtlMs: 0, rateLimitPerSecond: 0, sseMaxPerKey: 0 })
  })

  it.each([
    ["BATON_KEY_CACHE_MS", "1001", "from 0 to 1000 milliseconds"],
    ["BATON_KEY_CACHE_MS", "-1", "from 0 to 1000"],
    ["BATON_RATE_LIMIT_PER_SECOND", "fast", "from 0 to 1000000 requests per second"],
    ["BATON_RATE_LIMIT_PER_SECOND", "1.5", "from 0 to 1000000"],
    ["BATON_RATE_LIMIT_BURST", "0", "from 1 to 1000000"],
    ["BATON_SSE_MAX_PER_KEY", "100001", "from 0 to 100000 open streams"]
  ])("refuses %s=%s, naming the variable", (variable, value, expected) => {
    const error = failure({ [variable]: value })
    expect(error.variable).toBe(variable)
    expect(error.message).toContain(`${variable} must be an integer ${expected}`)
    expect(error.message).toContain(JSON.stringify(value))
  })

  it("treats blank values as unset", () => {
    expect(loadConfig({ PORT: "", HOST: " ", BATON_BOOTSTRAP_KEY: "" })).toMatchObject({
      port: 3000,
      host: "0.0.0.0",
      bootstrapKey: null
    })
  })

  it("reads every variable", () => {
    const config = loadConfig({
      PORT: "0",
      HOST: "127.0.0.1",
      BATON_STORAGE: "MEMORY",
      BATON_BOOTSTRAP_KEY: KEY,
      BATON_WORKER_CONCURRENCY: "0",
      BATON_CORS_ORIGINS: "https://app.example.com, http://localhost:5173/,https://app.example.com",
      BATON_LOG_LEVEL: "warn"
    })
    expect(config).toMatchObject({
      port: 0,
      host: "127.0.0.1",
      storage: "memory",
      workerConcurrency: 0,
      corsOrigins: ["https://app.example.com", "http://localhost:5173"],
      logLevel: "warn"
    })
    expect(config.bootstrapKey?.reveal()).toBe(KEY)
  })

  it.each([
    ["PORT", "abc"],
    ["PORT", "65536"],
    ["PORT", "-1"],
    ["PORT", "80.5"],
    ["HOST", "local host"],
    ["BATON_STORAGE", "sqlite"],
    ["BATON_POSTGRES_SCHEMA", "Baton"],
    ["BATON_POSTGRES_SCHEMA", "1baton"],
    ["BATON_POSTGRES_SCHEMA", "baton;drop"],
    ["BATON_POSTGRES_SCHEMA", "pg_catalog"],
    ["BATON_POSTGRES_SCHEMA", "information_schema"],
    ["BATON_POSTGRES_FEED", "notify"],
    ["BATON_POSTGRES_POOL_SIZE", "0"],
    ["BATON_POSTGRES_POOL_SIZE", "1001"],
    ["BATON_POSTGRES_POOL_SIZE", "many"],
    ["BATON_AUTO_MIGRATE", "yes please"],
    ["BATON_AUTO_MIGRATE", "constructor"],
    ["BATON_WORKER_CONCURRENCY", "-1"],
    ["BATON_WORKER_CONCURRENCY", "ten"],
    ["BATON_WORKER_CONCURRENCY", "1001"],
    ["BATON_WORKER_LEASE_MS", "999"],
    ["BATON_WORKER_LEASE_MS", "3600001"],
    ["BATON_WORKER_LEASE_MS", "30s"],
    ["BATON_SHUTDOWN_GRACE_MS", "-1"],
    ["BATON_SHUTDOWN_GRACE_MS", "3600001"],
    ["BATON_POSTGRES_APPLICATION_NAME", "x".repeat(64)],
    ["BATON_POSTGRES_APPLICATION_NAME", "tab\there"],
    ["BATON_CORS_ORIGINS", "app.example.com"],
    ["BATON_CORS_ORIGINS", "https://app.example.com/path"],
    ["BATON_CORS_ORIGINS", "ftp://files.example.com"],
    ["BATON_LOG_LEVEL", "verbose"]
  ])("names %s in the error for %j", (variable, value) => {
    const error = failure({ [variable]: value })
    expect(error.variable).toBe(variable)
    expect(error.message).toContain(variable)
    expect(error.message).toMatch(/must be/)
  })

  it("reads the mongo variables, keeps the URL secret, and describes it by hosts and database only", () => {
    const url = `mongodb://baton:${PG_PASSWORD}@m1.internal:27017,m2.internal:27017/jobs?replicaSet=rs0`
    const config = loadConfig({ BATON_STORAGE: "mongo", BATON_MONGO_URL: url })
    expect(config.mongo).toMatchObject({ database: null })
    expect(inspect(config, { depth: 10 })).not.toContain(PG_PASSWORD)
    expect(JSON.stringify(config)).not.toContain(PG_PASSWORD)
    expect(describeMongoUrl(new Secret(url), null)).toBe("m1.internal:27017,m2.internal:27017/jobs")
    expect(describeMongoUrl(new Secret("mongodb+srv://cluster0.example.net/"), "baton_eu")).toBe(
      "cluster0.example.net/baton_eu"
    )
    expect(describeMongoUrl(new Secret("mongodb://127.0.0.1:27017/?replicaSet=rs0"), null)).toBe(
      "127.0.0.1:27017/baton"
    )
  })

  it.each([
    ["BATON_STORAGE", { BATON_STORAGE: "mongo" }, "BATON_MONGO_URL must be set when BATON_STORAGE=mongo"],
    [
      "BATON_MONGO_URL",
      { BATON_STORAGE: "mongo", BATON_MONGO_URL: `postgres://x:${PG_PASSWORD}@y/z` },
      "mongodb://"
    ],
    ["BATON_MONGO_DATABASE", { BATON_MONGO_DATABASE: "a.b" }, "BATON_MONGO_DATABASE must be"],
    ["BATON_STORAGE", { BATON_MONGO_URL: "mongodb://127.0.0.1:27017" }, "set BATON_STORAGE=mongo"]
  ])("refuses a bad mongo setting (%s, %#)", (_, env, message) => {
    const error = failure(env)
    expect(error.message).toContain(message)
    expect(error.message).not.toContain(PG_PASSWORD)
  })

  it("resolves BATON_DATA_DIR against the working directory, and keeps an absolute one", () => {
    expect(loadConfig({ BATON_DATA_DIR: "var/baton" }, "/srv/app").dataDir).toBe("/srv/app/var/baton")
    expect(loadConfig({ BATON_DATA_DIR: "/data/baton" }, "/srv/app").dataDir).toBe("/data/baton")
    expect(loadConfig({}).dataDir).toBe(resolve(".baton/data"))
  })

  it("reads memory and pglite storage, and BATON_AUTO_MIGRATE", () => {
    expect(loadConfig({ BATON_STORAGE: "memory" })).toMatchObject({ storage: "memory", postgres: null })
    expect(loadConfig({ BATON_STORAGE: "PGlite", BATON_AUTO_MIGRATE: "false" })).toMatchObject({
      storage: "pglite",
      postgres: null,
      autoMigrate: false
    })
    expect(loadConfig({ BATON_AUTO_MIGRATE: "1" }).autoMigrate).toBe(true)
    expect(loadConfig({ BATON_AUTO_MIGRATE: "0" }).autoMigrate).toBe(false)
  })

  it("reads the postgres settings, with their defaults", () => {
    const config = loadConfig({ BATON_STORAGE: "postgres", BATON_POSTGRES_URL: PG_URL })
    expect(config).toMatchObject({
      storage: "postgres",
      autoMigrate: true,
      postgres: { schema: "baton", feed: "listen", poolSize: null }
    })
    expect(config.postgres?.url.reveal()).toBe(PG_URL)
    const tuned = loadConfig({
      BATON_STORAGE: "postgres",
      BATON_POSTGRES_URL: "postgresql://127.0.0.1/test",
      BATON_POSTGRES_SCHEMA: "baton_tenant_1",
      BATON_POSTGRES_FEED: "POLL",
      BATON_POSTGRES_POOL_SIZE: "25",
      BATON_POSTGRES_APPLICATION_NAME: "baton-eu-1",
      BATON_AUTO_MIGRATE: "FALSE",
      BATON_WORKER_LEASE_MS: "5000",
      BATON_SHUTDOWN_GRACE_MS: "0"
    })
    expect(tuned).toMatchObject({
      autoMigrate: false,
      workerLeaseMs: 5000,
      shutdownGraceMs: 0,
      postgres: { schema: "baton_tenant_1", feed: "poll", poolSize: 25, applicationName: "baton-eu-1" }
    })
  })

  it("requires BATON_POSTGRES_URL for postgres storage", () => {
    const error = failure({ BATON_STORAGE: "postgres" })
    expect(error.variable).toBe("BATON_POSTGRES_URL")
    expect(error.message).toContain("BATON_POSTGRES_URL must be set when BATON_STORAGE=postgres")
  })

  it("refuses a BATON_POSTGRES_URL without BATON_STORAGE rather than quietly using PGlite", () => {
    const error = failure({ BATON_POSTGRES_URL: PG_URL })
    expect(error.variable).toBe("BATON_STORAGE")
    expect(error.message).toContain("set BATON_STORAGE=postgres")
    expect(error.message).not.toContain(PG_PASSWORD)
    // Chosen explicitly, the URL is ignored.
    expect(loadConfig({ BATON_STORAGE: "pglite", BATON_POSTGRES_URL: PG_URL }).postgres).toBeNull()
  })

  it.each([
    `mysql://baton:${PG_PASSWORD}@db:3306/baton`,
    `baton:${PG_PASSWORD}@db:5432/baton`,
    `host=db password=${PG_PASSWORD}`
  ])("rejects a BATON_POSTGRES_URL that is not a postgres URL without echoing it (%#)", (url) => {
    const error = failure({ BATON_STORAGE: "postgres", BATON_POSTGRES_URL: url })
    expect(error.variable).toBe("BATON_POSTGRES_URL")
    expect(error.message).toContain("BATON_POSTGRES_URL must be a URL such as postgres://")
    expect(error.message).not.toContain(PG_PASSWORD)
    expect(String(error.stack)).not.toContain(PG_PASSWORD)
  })

  it("never shows the postgres URL when the config is logged or serialised", () => {
    const config = loadConfig({ BATON_STORAGE: "postgres", BATON_POSTGRES_URL: PG_URL })
    expect(inspect(config, { depth: 10 })).not.toContain(PG_PASSWORD)
    expect(JSON.stringify(config)).not.toContain(PG_PASSWORD)
    expect(config.postgres?.url).toBeInstanceOf(Secret)
  })

  it("reads the redis variables, keeps the URL secret, and describes it by host, port and db only", () => {
    const url = `redis://:${PG_PASSWORD}@cache.internal:6380/2`
    const config = loadConfig({
      BATON_STORAGE: "redis",
      BATON_REDIS_URL: url,
      BATON_REDIS_PREFIX: "baton:eu-1",
      BATON_REDIS_REQUIRE_AOF: "true"
    })
    expect(config.redis).toMatchObject({ prefix: "baton:eu-1", requireAof: true })
    expect(config.redis?.url).toBeInstanceOf(Secret)
    expect(inspect(config, { depth: 10 })).not.toContain(PG_PASSWORD)
    expect(JSON.stringify(config)).not.toContain(PG_PASSWORD)
    expect(describeRedisUrl(new Secret(url))).toBe("cache.internal:6380/2")
    expect(describeRedisUrl(new Secret("redis://127.0.0.1"))).toBe("127.0.0.1:6379")
    expect(
      loadConfig({ BATON_STORAGE: "redis", BATON_REDIS_URL: "redis://127.0.0.1:6379" }).redis
    ).toMatchObject({
      prefix: "baton",
      requireAof: false
    })
  })

  it.each([
    ["BATON_STORAGE", { BATON_STORAGE: "redis" }, "BATON_REDIS_URL must be set when BATON_STORAGE=redis"],
    ["BATON_REDIS_URL", { BATON_STORAGE: "redis", BATON_REDIS_URL: `http://:${PG_PASSWORD}@x` }, "redis://"],
    ["BATON_REDIS_PREFIX", { BATON_REDIS_PREFIX: "has space" }, "BATON_REDIS_PREFIX must be"],
    ["BATON_REDIS_REQUIRE_AOF", { BATON_REDIS_REQUIRE_AOF: "maybe" }, "BATON_REDIS_REQUIRE_AOF must be"],
    ["BATON_STORAGE", { BATON_REDIS_URL: "redis://127.0.0.1:6379" }, "set BATON_STORAGE=redis"]
  ])("refuses a bad redis setting (%s, %#)", (_, env, message) => {
    const error = failure(env)
    expect(error.message).toContain(message)
    expect(error.message).not.toContain(PG_PASSWORD)
  })

  it("describes a postgres URL by host, port and database only", () => {
    expect(describePostgresUrl(new Secret(PG_URL))).toBe("db.internal:5433/baton_prod")
    expect(describePostgresUrl(new Secret("postgres://127.0.0.1/test"))).toBe("127.0.0.1/test")
    expect(describePostgresUrl(new Secret("postgres:///baton?host=/run/postgresql"))).toBe(
      "(local socket)/baton"
    )
    expect(describePostgresUrl(new Secret(`postgres://baton:${PG_PASSWORD}@/baton?host=/run/pg`))).toBe(
      "(a URL not shown)"
    )
  })

  it.each([
    "no-colon-at-all",
    "key_short:s3cr3t-s3cr3t-s3cr3t",
    "key_bootstrap0001:short",
    "key_bootstrap0001:has spaces in the secret part",
    "bootstrap0001:s3cr3t-s3cr3t-s3cr3t-abcdef"
  ])("rejects a malformed BATON_BOOTSTRAP_KEY without echoing it (%#)", (value) => {
    const error = failure({ BATON_BOOTSTRAP_KEY: value })
    expect(error.variable).toBe("BATON_BOOTSTRAP_KEY")
    expect(error.message).toContain("BATON_BOOTSTRAP_KEY must be key_id:secret")
    expect(error.message).not.toContain(value)
    const [, secret = value] = value.split(":")
    expect(error.message).not.toContain(secret)
    expect(String(error.stack)).not.toContain(secret)
  })

  it("reports every bad variable at once", () => {
    const error = failure({
      PORT: "x",
      BATON_STORAGE: "postgres",
      BATON_POSTGRES_FEED: "notify",
      BATON_AUTO_MIGRATE: "maybe",
      BATON_WORKER_CONCURRENCY: "y",
      BATON_BOOTSTRAP_KEY: "key_x:nope"
    })
    expect(error.problems.map((p) => p.variable)).toEqual([
      "PORT",
      "BATON_POSTGRES_URL",
      "BATON_POSTGRES_FEED",
      "BATON_AUTO_MIGRATE",
      "BATON_BOOTSTRAP_KEY",
      "BATON_WORKER_CONCURRENCY"
    ])
    expect(error.message).not.toContain("nope")
  })

  it("masks credentials in a URL it echoes", () => {
    const error = failure({ BATON_STORAGE: "postgres://admin:hunter2@db:5432/baton" })
    expect(error.variable).toBe("BATON_STORAGE")
    expect(error.message).not.toContain("hunter2")
  })

  it("masks a password holding an unencoded / or @", () => {
    expect(maskCredentials("postgres://u:p/ss@h:5432/db")).toBe("postgres://***@h:5432/db")
    expect(maskCredentials("redis://:p@ss@h:6379")).toBe("redis://***@h:6379")
    expect(maskCredentials("a postgres://u:x/y@z@db/b failed; redis://:q@r@cache too")).toBe(
      "a postgres://***@db/b failed; redis://***@cache too"
    )
    expect(maskCredentials("postgres://db:5432/baton")).toBe("postgres://db:5432/baton")
    const error = failure({ BATON_STORAGE: "postgres://admin:s3/kr@t@db:5432/baton" })
    expect(error.message).not.toContain("s3/kr")
    expect(error.message).not.toContain("kr@t")
  })

  it("never shows the bootstrap key when the config is logged or serialised", () => {
    const config = loadConfig({ BATON_BOOTSTRAP_KEY: KEY })
    const secret = KEY.split(":")[1] ?? ""
    expect(inspect(config)).not.toContain(secret)
    expect(JSON.stringify(config)).not.toContain(secret)
    expect(`${config.bootstrapKey}`).toBe("[REDACTED]")
    expect(config.bootstrapKey).toBeInstanceOf(Secret)
  })
})
