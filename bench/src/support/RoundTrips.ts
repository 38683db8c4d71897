/**
 * Counts storage round trips at the client libraries every contender shares:
 * `pg.Client#query` (Baton's adapter, pg-boss and graphile-worker all resolve
 * to the same `pg`) and ioredis' `sendCommand` (Baton's Redis adapter and
 * BullMQ share it). Contenders run one at a time, so a counter reset before
 * each one counts that contender alone. Pipelined Redis commands count one
 * each: the figure is commands, the unit the issue asks for.
 */
import { Redis } from "ioredis"
import pg from "pg"

export interface PgStatement {
  /** The prepared statement's name ("" when unnamed). */
  readonly name: string
  readonly text: string
  readonly values: ReadonlyArray<unknown>
}

/** A Redis command as ioredis sends it: `evalsha` with its sha, key count, keys and arguments. */
export interface RedisCommand {
  readonly name: string
  readonly args: ReadonlyArray<unknown>
}

interface Counters {
  pg: number
  redis: number
  /** Called with every parameterised Postgres statement while set (scenario 3 captures its append). */
  observePg: ((statement: PgStatement) => void) | null
  observeRedis: ((command: RedisCommand) => void) | null
}

const counters: Counters = { pg: 0, redis: 0, observePg: null, observeRedis: null }
let installed = false
/** The bench's own connections (completion polls, setup): never counted. */
const uncounted = new WeakSet<object>()

const statementOf = (args: ReadonlyArray<unknown>): PgStatement | null => {
  const [first, second] = args
  if (typeof first === "string") return { name: "", text: first, values: Array.isArray(second) ? second : [] }
  if (typeof first === "object" && first !== null && "text" in first && typeof first.text === "string") {
    const values = "values" in first && Array.isArray(first.values) ? first.values : []
    const name = "name" in first && typeof first.name === "string" ? first.name : ""
    return { name, text: first.text, values }
  }
  return null
}

/** Patches the shared client classes once per process. */
export const installRoundTripCounters = (): void => {
  if (installed) return
  installed = true
  const pgQuery = pg.Client.prototype.query as (...args: unknown[]) => unknown
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    if (uncounted.has(this)) return pgQuery.apply(this, args)
    counters.pg++
    if (counters.observePg !== null) {
      const statement = statementOf(args)
      if (statement !== null) counters.observePg(statement)
    }
    return pgQuery.apply(this, args)
  } as typeof pg.Client.prototype.query
  const sendCommand = Redis.prototype.sendCommand as (...args: unknown[]) => unknown
  Redis.prototype.sendCommand = function (this: Redis, ...args: unknown[]) {
    if (!uncounted.has(this)) {
      counters.redis++
      const [command] = args
      if (counters.observeRedis !== null && typeof command === "object" && command !== null)
        counters.observeRedis(command as RedisCommand)
    }
    return sendCommand.apply(this, args)
  } as typeof Redis.prototype.sendCommand
}

export type CountedStore = "pg" | "redis"

/** Starts counting; the returned function reads the count since. */
export const startCounting = (store: CountedStore): (() => number) => {
  installRoundTripCounters()
  const from = counters[store]
  return () => counters[store] - from
}

/** Sees every Postgres statement until the returned function is called. */
export const observePgStatements = (observer: (statement: PgStatement) => void): (() => void) => {
  installRoundTripCounters()
  counters.observePg = observer
  return () => {
    counters.observePg = null
  }
}

/** Sees every Redis command (ioredis `Command`: `name`, `args`) until the returned function is called. */
export const observeRedisCommands = (observer: (command: RedisCommand) => void): (() => void) => {
  installRoundTripCounters()
  counters.observeRedis = observer
  return () => {
    counters.observeRedis = null
  }
}

/** Leaves `client` (one of the bench's own connections) out of every count. */
export const excludeFromCounts = <C extends pg.Client | Redis>(client: C): C => {
  uncounted.add(client)
  return client
}
