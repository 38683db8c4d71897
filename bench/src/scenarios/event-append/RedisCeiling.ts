/**
 * The Redis ceiling of scenario 3: the adapter's Lua append, captured from
 * Baton's round (the EVALSHA with its arguments, and the batch sizes),
 * replayed with no engine by one chain per run on one ioredis connection —
 * concurrent chains pipeline on it, as the adapter's own calls do. Guards
 * are left out (g = 0, like the Postgres ceiling's lease check); the log
 * length check and everything else run as the engine sent them.
 */
import { Redis } from "ioredis"
import { startBaton } from "../../support/Baton.js"
import type { Contender } from "../../support/Rounds.js"
import { observeRedisCommands, type RedisCommand, startCounting } from "../../support/RoundTrips.js"
import { openAdminRedis } from "../../support/Services.js"
import { type AppendRecorder, dealBatches, type Workload } from "./Workload.js"

/**
 * EVALSHA arguments: sha, 2 keys (run hash, event list), then ARGV: channel,
 * first seq, n, g, retention, write id, n events, 2g guard values, patch pairs.
 */
const ARGV = 4
const argvAt = (args: ReadonlyArray<unknown>, i: number): unknown => args[ARGV + i - 1]

/** The append's events and how many of them are step.progress; null when `c` is no append. */
const appendEvents = (
  c: RedisCommand
): { readonly all: number; readonly progress: number; readonly led: boolean } | null => {
  if (c.name !== "evalsha" || Number(c.args[1]) !== 2) return null
  const n = Number(argvAt(c.args, 3))
  if (!(n > 0) || !/:run:\{/.test(String(c.args[2]))) return null
  const events = c.args.slice(ARGV + 6, ARGV + 6 + n).map(String)
  const isProgress = (e: string) => e.includes('"step.progress"')
  return { all: n, progress: events.filter(isProgress).length, led: isProgress(events[0] ?? "") }
}

export interface RedisAppendRecorder extends AppendRecorder {
  readonly template: () => { readonly args: ReadonlyArray<unknown>; readonly prefix: string } | null
}

export const redisAppendRecorder = (): RedisAppendRecorder => {
  let seen: { args: ReadonlyArray<unknown>; prefix: string } | null = null
  let fallback: { args: ReadonlyArray<unknown>; prefix: string } | null = null
  let sizes: number[] = []
  return {
    observe: (prefix) => {
      sizes = []
      return observeRedisCommands((c) => {
        const events = appendEvents(c)
        if (events === null || events.progress === 0) return
        // Progress also rides with a step's end (one write): every progress event counts, but the
        // replayed call is a progress-only one when there was any (its patch touches no status).
        sizes.push(events.progress)
        if (events.progress === events.all) seen = { args: [...c.args], prefix }
        else if (fallback === null && events.led) fallback = { args: [...c.args], prefix }
      })
    },
    batchSizes: () => sizes,
    template: () => seen ?? fallback
  }
}

export const redisCeiling = (url: string, work: Workload, recorder: RedisAppendRecorder): Contender => ({
  name: "ceiling: bare Lua append loop",
  measure: async () => {
    const template = recorder.template()
    const batchSizes = recorder.batchSizes()
    if (template === null || batchSizes.length === 0)
      throw new Error("no append script call captured (the Baton round failed)")
    const baton = await startBaton({ backend: "redis", url, handlers: { stream: () => {} } })
    const admin = await openAdminRedis(url)
    // The replaying connection is counted: one command per append.
    const client = new Redis(url, { maxRetriesPerRequest: 1 })
    try {
      const ids: string[] = []
      for (let i = 0; i < work.runs; i++) {
        const created = await baton.engine.createRun({ handler: "stream", input: null })
        if (created._tag === "Created") ids.push(created.run.id)
      }
      const { args } = template
      const oldRun = /\{([^}]+)\}/.exec(String(args[2]))?.[1] ?? ""
      const keyOf = (key: unknown, runId: string) =>
        String(key).replace(template.prefix, baton.namespace).replace(`{${oldRun}}`, `{${runId}}`)
      const n = Number(argvAt(args, 3))
      const g = Number(argvAt(args, 4))
      const event = argvAt(args, 7)
      const patch = args.slice(ARGV + 6 + n + 2 * g)
      const logLengths = await Promise.all(ids.map((id) => admin.llen(keyOf(args[3], id))))
      const perRun = dealBatches(batchSizes, ids.length)
      const roundTrips = startCounting("redis")
      const startedAt = performance.now()
      await Promise.all(
        ids.map(async (id, i) => {
          let length = logLengths[i]!
          for (const [call, size] of (perRun[i] ?? []).entries()) {
            const reply = (await client.evalsha(
              String(args[0]),
              2,
              keyOf(args[2], id),
              keyOf(args[3], id),
              String(argvAt(args, 1)),
              length + 1,
              size,
              0,
              String(argvAt(args, 5)),
              `ceiling-${id}-${call}`,
              ...Array.from({ length: size }, () => String(event)),
              ...patch.map(String)
            )) as ReadonlyArray<unknown>
            if (Number(reply[0]) !== 1) throw new Error(`append to ${id} refused`)
            length += size
          }
        })
      )
      const elapsed = (performance.now() - startedAt) / 1000
      const events = batchSizes.reduce((a, b) => a + b, 0)
      return { value: events / elapsed, roundTripsPerRun: roundTrips() / work.runs }
    } finally {
      client.disconnect()
      admin.disconnect()
      await baton.close()
    }
  }
})
