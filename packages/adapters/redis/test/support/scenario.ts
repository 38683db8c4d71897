/**
 * Plumbing for the race tests: a run store over the package's internals with
 * script calls that can be stalled or made to fail, a controllable gate, and
 * `elapse`, which moves Redis's clock on for one prefix (TTLs run down,
 * pending idempotency records and index hints age) without any sleep.
 */
import { randomBytes } from "node:crypto"
import {
  DEFAULT_LIMITS,
  DEFAULT_REDACTION_POLICY,
  type EventRow,
  Id,
  Idempotency as Idem,
  type RunRecord,
  RunState,
  type RunStoreEncoded
} from "@baton/core"
import { Effect, Either, Exit } from "effect"
import type { Redis } from "ioredis"
import { makeIndexes } from "../../src/internal/Indexes.js"
import { keyLayout } from "../../src/internal/Keys.js"
import { defineScripts, type RedisClient, type Scripts } from "../../src/internal/Scripts.js"
import { makeRedisRunStore } from "../../src/RedisRunStore.js"

export interface StoreOptions {
  /** Replaces some script calls (stall them, make them fail). */
  readonly wrap?: (scripts: Scripts) => Scripts
  readonly finishedRunTtlMs?: number | null
  /** Replays wait this long for a run being created (default 0: answer at once). */
  readonly replayWaitMs?: number
  /** The client the store uses (default: the shared one), e.g. a Proxy that hooks a command. */
  readonly client?: RedisClient
}

export const makeStore = (client: Redis, prefix: string, options: StoreOptions = {}): RunStoreEncoded => {
  const keys = keyLayout(prefix)
  const used = options.client ?? client
  const real = defineScripts(used)
  const scripts = options.wrap?.(real) ?? real
  return makeRedisRunStore({
    client: used,
    keys,
    scripts,
    indexes: makeIndexes(keys, scripts),
    finishedRunTtlMs: options.finishedRunTtlMs ?? null,
    idempotencyGraceMs: 60_000,
    replayWaitMs: options.replayWaitMs ?? 0
  })
}

/** A point a stalled call reaches (`arrived`) and waits at until `release()`. */
export class Gate {
  private reach: () => void = () => {}
  private free: () => void = () => {}
  readonly arrived = new Promise<void>((resolve) => {
    this.reach = resolve
  })
  private readonly released = new Promise<void>((resolve) => {
    this.free = resolve
  })
  /** Called by the stalled code. */
  async pass(): Promise<void> {
    this.reach()
    await this.released
  }
  release(): void {
    this.free()
  }
}

export const token = (): string => randomBytes(6).toString("hex")

export interface NewRun {
  readonly record: RunRecord
  readonly events: ReadonlyArray<EventRow>
}

export const newRun = (customerId: string, handler: string, now: number): NewRun =>
  RunState.create(
    { id: Id.makeRunId(now), customerId, handler, input: { n: 1 }, metadata: {}, limits: DEFAULT_LIMITS },
    { now, redaction: DEFAULT_REDACTION_POLICY }
  )

export const idempotency = (
  run: NewRun,
  key: string,
  now: number,
  body: unknown = { same: true }
): Idem.IdempotencyRecord => ({
  customer_id: run.record.customer_id,
  key,
  fingerprint: Idem.fingerprint(body as never),
  run_id: run.record.id,
  expires_at: now + Idem.DEFAULT_IDEMPOTENCY_TTL_MS
})

export const run = <A, E>(effect: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(effect)

/** The result as data: Right(success) or Left(failure). */
export const settle = <A, E>(effect: Effect.Effect<A, E>): Promise<Either.Either<A, E>> =>
  Effect.runPromiseExit(effect).then((exit) =>
    Exit.isSuccess(exit)
      ? Either.right(exit.value)
      : Either.left((exit.cause._tag === "Fail" ? exit.cause.error : exit.cause) as E)
  )

/**
 * As if Redis's clock had moved on by `ms` for every key under the prefix: keys
 * whose TTL runs out are deleted, other TTLs shrink, and the times Redis wrote
 * (pending_since of idempotency records, hint times in the indexes' `:v` hashes,
 * expiry scores) move back by `ms`.
 */
export const elapse = async (client: Redis, prefix: string, ms: number): Promise<void> => {
  let cursor = "0"
  do {
    const [next, found] = await client.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000)
    cursor = next
    for (const key of found) {
      const ttl = await client.pttl(key)
      if (ttl > 0 && ttl <= ms) {
        await client.del(key)
        continue
      }
      if (ttl > 0) await client.pexpire(key, ttl - ms)
      const type = await client.type(key)
      if (type === "hash" && key.endsWith(":v")) {
        for (const [member, value] of Object.entries(await client.hgetall(key))) {
          const [version, at] = value.split(":")
          await client.hset(key, member, `${version}:${Number(at) - ms}`)
        }
      } else if (type === "hash") {
        const since = await client.hget(key, "pending_since")
        if (since !== null) await client.hset(key, "pending_since", String(Number(since) - ms))
      } else if (type === "zset" && key.endsWith("{expiring}")) {
        const flat = await client.zrange(key, 0, "-1", "WITHSCORES")
        for (let i = 0; i + 1 < flat.length; i += 2)
          await client.zadd(key, Number(flat[i + 1]) - ms, String(flat[i]))
      }
    }
  } while (cursor !== "0")
}
