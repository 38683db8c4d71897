/**
 * The services the bench measures against: Postgres and Redis found as the
 * adapter tests find them, fresh schema / prefix names per contender and
 * round, the bench's own (uncounted) connections, and cleanup.
 */
import { randomBytes } from "node:crypto"
import { connect } from "node:net"
import { Redis } from "ioredis"
import pg from "pg"
import { excludeFromCounts } from "./RoundTrips.js"

export interface Services {
  /** null when no Postgres answered. */
  readonly postgresUrl: string | null
  readonly redisUrl: string | null
}

/** Where the adapter tests look first (see @baton/adapter-conformance's Services.ts), then the local default. */
const CANDIDATES = {
  postgres: { env: "BATON_TEST_POSTGRES_URL", local: "postgres://postgres@127.0.0.1:5432/test", port: 5432 },
  redis: { env: "BATON_TEST_REDIS_URL", local: "redis://127.0.0.1:6379", port: 6379 }
} as const

const isReachable = (url: string, defaultPort: number): Promise<boolean> =>
  new Promise((resolve) => {
    let host: string
    let port: number
    try {
      const u = new URL(url)
      host = u.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1"
      port = u.port === "" ? defaultPort : Number(u.port)
    } catch {
      resolve(false)
      return
    }
    const socket = connect({ host, port })
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(1500, () => done(false))
    socket.once("connect", () => done(true))
    socket.once("error", () => done(false))
  })

const locate = async (service: keyof typeof CANDIDATES): Promise<string | null> => {
  const { env, local, port } = CANDIDATES[service]
  for (const url of [process.env[env], local])
    if (url !== undefined && url !== "" && (await isReachable(url, port))) return url
  return null
}

/**
 * Finds the services as the adapter tests do, env URL first, but never
 * through `locateService` itself: that package's entry point imports vitest,
 * which refuses to load outside a test run. Containers are not tried either: a
 * benchmark against a container started on demand would measure its start-up.
 */
export const locateServices = async (): Promise<Services> => {
  const [postgresUrl, redisUrl] = await Promise.all([locate("postgres"), locate("redis")])
  return { postgresUrl, redisUrl }
}

/** A name no other run of the bench uses: `bench_<label>_<random>`, a valid schema and key prefix. */
export const freshName = (label: string): string => `bench_${label}_${randomBytes(4).toString("hex")}`

/** A Postgres connection of the bench itself (setup, completion polls): left out of round-trip counts. */
export const openAdminClient = async (url: string): Promise<pg.Client> => {
  const client = excludeFromCounts(new pg.Client({ connectionString: url }))
  await client.connect()
  return client
}

/** Runs `sql` on a short-lived uncounted connection. */
export const adminQuery = async <R extends pg.QueryResultRow = pg.QueryResultRow>(
  url: string,
  sql: string,
  values: ReadonlyArray<unknown> = []
): Promise<ReadonlyArray<R>> => {
  const client = await openAdminClient(url)
  try {
    return (await client.query<R>(sql, [...values])).rows
  } finally {
    await client.end()
  }
}

export const dropSchema = async (url: string, schema: string): Promise<void> => {
  await adminQuery(url, `DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
}

/** A Redis connection of the bench itself: left out of round-trip counts. */
export const openAdminRedis = async (url: string): Promise<Redis> => {
  const redis = excludeFromCounts(new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 }))
  await redis.connect()
  return redis
}

/** Deletes every key under `prefix` (SCAN, never KEYS: the server is shared). */
export const dropRedisPrefix = async (url: string, prefix: string): Promise<void> => {
  const redis = await openAdminRedis(url)
  try {
    let cursor = "0"
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000)
      cursor = next
      if (keys.length > 0) await redis.unlink(...keys)
    } while (cursor !== "0")
  } finally {
    redis.disconnect()
  }
}

/** Resolves once `check` returns true, checking every `everyMs`; rejects after `timeoutMs`. */
export const waitUntil = async (
  check: () => Promise<boolean>,
  what: string,
  { everyMs = 5, timeoutMs = 120_000 }: { everyMs?: number; timeoutMs?: number } = {}
): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}.`)
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}

/** ioredis connection options from a redis:// URL, for BullMQ (which opens its own connections). */
export const bullConnection = (url: string) => {
  const u = new URL(url)
  return {
    host: u.hostname,
    port: u.port === "" ? 6379 : Number(u.port),
    ...(u.password === "" ? {} : { password: decodeURIComponent(u.password) }),
    maxRetriesPerRequest: null
  }
}
