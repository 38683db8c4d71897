/**
 * Everything a lane's store holds for this suite, as text, read around the
 * server: Postgres — every row of every table in the suite's schema as JSON;
 * Redis — every key under the suite's prefix with its whole value, whatever
 * its type (string, hash, list, set, sorted set, stream). Read with the
 * suite's own database identity (the lane's `serverEnv`).
 */
import { Redis } from "ioredis"
import pg from "pg"
import type { LaneStore } from "../../cluster/support/Lanes.js"

const dumpPostgres = async (url: string, schema: string): Promise<string> => {
  const client = new pg.Client({ connectionString: url, application_name: `${schema}_backdoor` })
  await client.connect()
  try {
    const tables = await client.query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name",
      [schema]
    )
    const out: string[] = []
    for (const { table_name } of tables.rows) {
      const rows = await client.query<{ row: string }>(
        `SELECT row_to_json(t)::text AS row FROM "${schema}"."${table_name}" t`
      )
      out.push(`## ${table_name}`, ...rows.rows.map((r) => r.row))
    }
    return out.join("\n")
  } finally {
    await client.end()
  }
}

const dumpRedisKey = async (redis: Redis, key: string): Promise<string> => {
  const type = await redis.type(key)
  switch (type) {
    case "string":
      return (await redis.get(key)) ?? ""
    case "hash":
      return JSON.stringify(await redis.hgetall(key))
    case "list":
      return JSON.stringify(await redis.lrange(key, 0, -1))
    case "set":
      return JSON.stringify(await redis.smembers(key))
    case "zset":
      return JSON.stringify(await redis.zrange(key, "0", "-1", "WITHSCORES"))
    case "stream":
      return JSON.stringify(await redis.xrange(key, "-", "+"))
    case "none":
      return ""
    default:
      throw new Error(`the back door cannot read ${key} of type ${type}`)
  }
}

const dumpRedis = async (url: string, prefix: string): Promise<string> => {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 2 })
  await redis.connect()
  try {
    const out: string[] = []
    let cursor = "0"
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", "500")
      cursor = next
      for (const key of keys) out.push(`## ${key}`, await dumpRedisKey(redis, key))
    } while (cursor !== "0")
    return out.join("\n")
  } finally {
    redis.disconnect()
  }
}

/** The whole store of `store` as text. */
export const dumpStore = async (store: LaneStore): Promise<string> => {
  const env = store.serverEnv
  switch (store.lane) {
    case "postgres":
      return dumpPostgres(env.BATON_POSTGRES_URL!, env.BATON_POSTGRES_SCHEMA!)
    case "redis":
      return dumpRedis(env.BATON_REDIS_URL!, env.BATON_REDIS_PREFIX!)
    default:
      throw new Error(`no back door for ${store.lane}`)
  }
}
