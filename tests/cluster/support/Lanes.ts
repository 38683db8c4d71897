/**
 * Storage lanes: one store per test suite, private to it, that the cluster's
 * server processes share, and that the suite can take away (an outage) and
 * give back.
 *
 * Each lane gives the suite a database identity of its own — a Postgres role
 * owning a fresh schema `baton_t_<random>`, a Redis ACL user whose keys are
 * under a fresh prefix — so an outage can be aimed at exactly this suite's
 * connections (`pg_stat_activity.usename`, `CLIENT KILL USER`) without
 * touching other test files running at the same time, whatever application
 * name the server gives its connections.
 */
import { randomBytes } from "node:crypto"
import { locateService, type ServiceLocation } from "@baton/adapter-conformance"
import { Redis } from "ioredis"
import pg from "pg"

export type LaneName = "postgres" | "redis" | "mongo"

/** A store the cluster's processes share. */
export interface LaneStore {
  readonly lane: LaneName
  /** For messages: the schema or prefix, never a password. */
  readonly label: string
  /** The server processes' storage variables. */
  readonly serverEnv: Readonly<Record<string, string>>
  /** Drops every open connection of the servers (they may reconnect at once); the ids of those dropped. */
  readonly dropConnections: () => Promise<ReadonlyArray<string>>
  /** Starts an outage: new connections are refused and open ones dropped, until `restore`. */
  readonly cut: () => Promise<void>
  readonly restore: () => Promise<void>
  /** Ids of the connections the servers hold now (backend pids, client ids). */
  readonly connections: () => Promise<ReadonlyArray<string>>
  /** Removes the schema or keys and the identity, and stops a container this lane started. */
  readonly close: () => Promise<void>
}

export interface Lane {
  readonly name: LaneName
  /**
   * Why the lane cannot run in this build, or null when it can. Enabling a lane
   * once the server supports it is setting this to null.
   */
  readonly unavailable: string | null
  /** Opens a private store, or null when the service is absent (and not required): the tests skip. */
  readonly open: () => Promise<LaneStore | null>
}

const suffix = (): string => randomBytes(5).toString("hex")

const withUser = (url: string, user: string, password: string): string => {
  const u = new URL(url)
  u.username = user
  u.password = password
  return u.toString()
}

const openPostgres = async (): Promise<LaneStore | null> => {
  const found = await locateService("postgres")
  if (found === null) return null
  const name = `baton_t_${suffix()}`
  const password = randomBytes(12).toString("hex")
  const admin = new pg.Client({ connectionString: found.url, application_name: "baton_cluster_admin" })
  await admin.connect()
  const q = (sql: string) => admin.query(sql)
  try {
    const db = (await q("SELECT current_database() AS db")).rows[0].db as string
    // A role of its own, owning its schema: what an operator would give Baton, and a handle on exactly
    // this suite's connections. The role needs CREATE on the database for the migration's
    // CREATE SCHEMA IF NOT EXISTS.
    await q(`CREATE ROLE ${name} LOGIN PASSWORD '${password}'`)
    await q(`GRANT CREATE ON DATABASE "${db}" TO ${name}`)
    await q(`CREATE SCHEMA ${name} AUTHORIZATION ${name}`)
    const terminate = async (): Promise<ReadonlyArray<string>> =>
      (
        await admin.query(
          "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()",
          [name]
        )
      ).rows.map((row) => String(row.pid))
    return {
      lane: "postgres",
      label: `schema ${name}`,
      serverEnv: {
        BATON_STORAGE: "postgres",
        BATON_POSTGRES_URL: withUser(found.url, name, password),
        BATON_POSTGRES_SCHEMA: name,
        BATON_POSTGRES_APPLICATION_NAME: name,
        // Up to 6 processes at once on a test database (max_connections 100) shared with other test files.
        BATON_POSTGRES_POOL_SIZE: "5"
      },
      dropConnections: terminate,
      cut: async () => {
        await q(`ALTER ROLE ${name} NOLOGIN`)
        await terminate()
      },
      restore: async () => {
        await q(`ALTER ROLE ${name} LOGIN`)
      },
      connections: async () =>
        (await admin.query("SELECT pid FROM pg_stat_activity WHERE usename = $1", [name])).rows.map((row) =>
          String(row.pid)
        ),
      close: async () => {
        try {
          await q(`ALTER ROLE ${name} NOLOGIN`)
          await terminate()
          await q(`DROP SCHEMA IF EXISTS ${name} CASCADE`)
          await q(`REVOKE ALL ON DATABASE "${db}" FROM ${name}`)
          await q(`DROP OWNED BY ${name} CASCADE`)
          await q(`DROP ROLE IF EXISTS ${name}`)
        } finally {
          await admin.end()
          await found.stop()
        }
      }
    }
  } catch (error) {
    await admin.end().catch(() => {})
    await found.stop()
    throw error
  }
}

/** Deletes every key under `prefix` (SCAN, so the server is never blocked). */
const deletePrefix = async (redis: Redis, prefix: string): Promise<void> => {
  let cursor = "0"
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 500)
    cursor = next
    if (keys.length > 0) await redis.del(...keys)
  } while (cursor !== "0")
}

const openRedis = async (found: ServiceLocation): Promise<LaneStore> => {
  const name = `baton_t_${suffix()}`
  const password = randomBytes(12).toString("hex")
  const admin = new Redis(found.url, { lazyConnect: true, maxRetriesPerRequest: 2 })
  await admin.connect()
  try {
    // An ACL user of its own, limited to its prefix (keys and channels).
    const grant = ["on", `>${password}`, `~${name}:*`, `&${name}:*`, "+@all"]
    await admin.call("ACL", "SETUSER", name, "reset", ...grant)
    const clients = async (): Promise<ReadonlyArray<string>> =>
      String(await admin.call("CLIENT", "LIST"))
        .split("\n")
        .filter((line) => line.includes(` user=${name} `))
        .map((line) => /(?:^|\s)id=(\d+)/.exec(line)?.[1] ?? "?")
    const kill = async (): Promise<ReadonlyArray<string>> => {
      const ids = await clients()
      await admin.call("CLIENT", "KILL", "USER", name)
      return ids
    }
    return {
      lane: "redis",
      label: `prefix ${name}`,
      serverEnv: {
        BATON_STORAGE: "redis",
        BATON_REDIS_URL: withUser(found.url, name, password),
        BATON_REDIS_PREFIX: name
      },
      dropConnections: kill,
      cut: async () => {
        await admin.call("ACL", "SETUSER", name, "off")
        await kill()
      },
      restore: async () => {
        await admin.call("ACL", "SETUSER", name, "on")
      },
      connections: clients,
      close: async () => {
        try {
          await admin.call("ACL", "DELUSER", name)
          await deletePrefix(admin, name)
        } finally {
          admin.disconnect()
          await found.stop()
        }
      }
    }
  } catch (error) {
    admin.disconnect()
    await found.stop()
    throw error
  }
}

export const LANES: ReadonlyArray<Lane> = [
  { name: "postgres", unavailable: null, open: openPostgres },
  {
    name: "redis",
    unavailable: null,
    open: async () => {
      const found = await locateService("redis")
      return found === null ? null : openRedis(found)
    }
  },
  {
    name: "mongo",
    // Needs an open() giving each suite its own database (BATON_MONGO_DATABASE) and a way to cut exactly
    // its connections (a user of its own), like the lanes above.
    unavailable: "not written yet: no per-suite database or outage for Mongo in this harness",
    open: async () => null
  }
]
