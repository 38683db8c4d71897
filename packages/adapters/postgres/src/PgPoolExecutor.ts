/** The executor over a Postgres server: a `pg.Pool`, plus one connection of its own per LISTEN. */
import pg from "pg"
import type { ListenHandlers, Queryable, Row, SqlExecutor, Statement } from "./Executor.js"

export interface PgPoolOptions {
  readonly connectionString: string
  /** Connections in the pool (default 10). Size it as described in docs/adapters/postgres.md. */
  readonly max?: number
  /** Shown in `pg_stat_activity` (default `baton`). */
  readonly applicationName?: string
  /** How long to wait for a connection before the call fails as unavailable (default 5000). */
  readonly connectionTimeoutMs?: number
  /**
   * How long one statement may take before the call fails as unavailable (default 30 000): a
   * connection whose packets vanish (a dead proxy, a partition) would otherwise hang it for hours.
   */
  readonly queryTimeoutMs?: number
}

const INT8 = 20
// Timestamps are epoch ms in bigint columns: well inside the exact range of a double.
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === INT8
      ? (v: string) => Number(v)
      : pg.types.getTypeParser(oid, format as "text")) as typeof pg.types.getTypeParser
}

const ignore = () => {}

const RECONNECT_MIN_MS = 100
const RECONNECT_MAX_MS = 5000

const hasSqlState = (error: unknown): boolean =>
  typeof error === "object" &&
  error !== null &&
  typeof (error as { code?: unknown }).code === "string" &&
  /^[0-9A-Z]{5}$/.test((error as { code: string }).code)

/** How often the LISTEN connection proves it is alive (a silent one would stop hints without a word). */
const LISTEN_PING_MS = 15_000
const LISTEN_PING_TIMEOUT_MS = 5_000

const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`

const queryable = (client: pg.Pool | pg.PoolClient): Queryable => ({
  query: async <R extends Row>(s: Statement, params: ReadonlyArray<unknown>) =>
    (await client.query<R>({ name: s.name, text: s.text, values: [...params] })).rows,
  exec: async (script) => {
    await client.query(script)
  }
})

export const makePgPoolExecutor = (options: PgPoolOptions): SqlExecutor => {
  const clientConfig: pg.ClientConfig = {
    connectionString: options.connectionString,
    application_name: options.applicationName ?? "baton",
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 5000,
    query_timeout: options.queryTimeoutMs ?? 30_000,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    types
  }
  const pool = new pg.Pool({ ...clientConfig, max: options.max ?? 10, idleTimeoutMillis: 30_000 })
  // A connection the server drops while idle (restart, pg_terminate_backend) errors once and is discarded by
  // the pool; without a listener that error would end the process. Checked-out clients get one too.
  pool.on("error", ignore)
  pool.on("connect", (client) => client.on("error", ignore))
  const listeners = new Set<() => Promise<void>>()

  return {
    ...queryable(pool),

    transaction: async (body) => {
      const client = await pool.connect()
      let broken = false
      try {
        await client.query("BEGIN")
        const result = await body(queryable(client))
        await client.query("COMMIT")
        return result
      } catch (error) {
        // Without a SQLSTATE the failure was the connection's (lost, timed out): it must not go back to the
        // pool, where a statement of ours may still be running on it. A failed ROLLBACK says the same.
        broken = !hasSqlState(error)
        if (!broken)
          await client.query("ROLLBACK").catch(() => {
            broken = true
          })
        throw error
      } finally {
        client.release(broken)
      }
    },

    listen: async (channel, handlers: ListenHandlers) => {
      let client: pg.Client | null = null
      let stopped = false
      let timer: NodeJS.Timeout | undefined
      let failures = 0

      const open = async (): Promise<void> => {
        const c = new pg.Client(clientConfig)
        c.on("error", ignore)
        try {
          await c.connect()
          c.on("notification", (m) => {
            if (m.channel === channel) handlers.onNotification(m.payload ?? "")
          })
          await c.query(`LISTEN ${quoteIdent(channel)}`)
        } catch (error) {
          await c.end().catch(ignore)
          throw error
        }
        c.on("end", () => {
          clearInterval(ping)
          if (stopped || client !== c) return
          client = null
          handlers.onLost()
          reconnect()
        })
        const ping = setInterval(() => {
          // Dead without a FIN: drop the socket so `end` fires and the reconnect begins.
          const drop = () => c.connection.stream.destroy()
          const timeout = setTimeout(drop, LISTEN_PING_TIMEOUT_MS)
          c.query("SELECT 1").then(
            () => clearTimeout(timeout),
            () => {
              clearTimeout(timeout)
              drop()
            }
          )
        }, LISTEN_PING_MS)
        ping.unref()
        client = c
      }

      const reconnect = () => {
        const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** failures)
        timer = setTimeout(() => {
          open().then(
            () => {
              failures = 0
              if (stopped) void client?.end().catch(ignore)
              else handlers.onListening()
            },
            () => {
              failures++
              if (!stopped) reconnect()
            }
          )
        }, delay)
        timer.unref()
      }

      await open()
      const stop = async () => {
        stopped = true
        clearTimeout(timer)
        listeners.delete(stop)
        await client?.end().catch(ignore)
        client = null
      }
      listeners.add(stop)
      return stop
    },

    close: async () => {
      await Promise.all([...listeners].map((stop) => stop()))
      await pool.end()
    }
  }
}
