/**
 * Scenario 3, event append: R runs each stream D content deltas from one
 * step (R × D = 100,000 at full size), all at once on one worker. Measured:
 * progress events persisted per second, against the ceiling of the same
 * writes in the same round of rounds: the adapter's own append (statement
 * or Lua script) replayed with no engine, as captured from Baton's round
 * (see PostgresCeiling.ts, RedisCeiling.ts).
 */
import { defineHandler } from "@baton/core"
import { type Backend, loadRedisAdapter, startBaton } from "../../support/Baton.js"
import { type Comparison, goal } from "../../support/Report.js"
import { type Contender, type ContenderSummary, Countdown, interleave } from "../../support/Rounds.js"
import { startCounting } from "../../support/RoundTrips.js"
import { type Scenario, type ScenarioContext, sized, unavailable } from "../../support/Scenario.js"
import { adminQuery, waitUntil } from "../../support/Services.js"
import { pgAppendRecorder, postgresCeiling } from "./PostgresCeiling.js"
import { redisAppendRecorder, redisCeiling } from "./RedisCeiling.js"
import { type AppendRecorder, POOL_SIZE, type Workload } from "./Workload.js"

/** A streaming handler yields to the event loop this often, as one awaiting tokens would. */
const DELTAS_PER_TICK = 10
const DELTA = "token "

const streamingHandler = (deltas: number, handled: Countdown) => ({
  stream: defineHandler(async (run) => {
    await run.step("stream", async (step) => {
      for (let i = 1; i <= deltas; i++) {
        step.progress({ content_delta: DELTA })
        if (i % DELTAS_PER_TICK === 0) await new Promise((resolve) => setImmediate(resolve))
      }
    })
    handled.tick()
  })
})

const batonContender = (
  backend: Backend,
  url: string,
  work: Workload,
  recorder: AppendRecorder
): Contender => ({
  name: `baton (${backend})`,
  measure: async () => {
    const handled = new Countdown(work.runs)
    const baton = await startBaton({
      backend,
      url,
      poolSize: POOL_SIZE,
      handlers: streamingHandler(work.deltasPerRun, handled)
    })
    const stopObserving = recorder.observe(baton.namespace)
    try {
      for (let i = 0; i < work.runs; i++) await baton.engine.createRun({ handler: "stream", input: null })
      const roundTrips = startCounting(backend === "postgres" ? "pg" : "redis")
      const startedAt = performance.now()
      const worker = await baton.engine.startWorker({ concurrency: work.runs })
      await handled.done
      await waitUntil(async () => worker.active().length === 0, "the runs to be stored as succeeded", {
        everyMs: 1
      })
      const elapsed = (performance.now() - startedAt) / 1000
      const trips = roundTrips()
      stopObserving()
      const events = work.runs * work.deltasPerRun
      const recorded = recorder.batchSizes().reduce((a, b) => a + b, 0)
      if (recorded !== events) throw new Error(`${recorded} progress events appended, ${events} expected`)
      if (backend === "postgres") {
        const [row] = await adminQuery<{ n: number }>(
          url,
          `SELECT count(*)::int AS n FROM "${baton.namespace}".events WHERE type = 'step.progress'`
        )
        if (row?.n !== events) throw new Error(`${row?.n} progress events stored, ${events} expected`)
      }
      return {
        value: events / elapsed,
        roundTripsPerRun: trips / work.runs,
        extra: { eventsPerAppend: events / recorder.batchSizes().length }
      }
    } finally {
      stopObserving()
      await baton.close()
    }
  }
})

const BASE = {
  scenario: "append",
  metric: "progress events persisted/s",
  unit: "events/s",
  direction: "higher-is-better"
} as const

const compare = (
  backend: Backend,
  ours: ContenderSummary,
  ceiling: ContenderSummary,
  floor: number
): Comparison => {
  const oursValue = ours.failure === null ? ours.value : null
  const ceilingValue = ceiling.failure === null ? ceiling.value : null
  const ratio = oursValue === null || ceilingValue === null ? null : oursValue / ceilingValue
  const failures = [ours, ceiling].flatMap((c) => (c.failure === null ? [] : [`${c.name}: ${c.failure}`]))
  return {
    ...BASE,
    backend,
    ours: oursValue,
    referenceName: `ceiling (${ceiling.name.replace("ceiling: ", "")})`,
    reference: ceilingValue,
    roundTrips: { ours: ours.roundTripsPerRun, reference: ceiling.roundTripsPerRun },
    spread: ours.spread,
    goals: [
      goal("≥ 80% of the ceiling", ratio, { atLeast: 0.8 }),
      goal(`≥ ${floor.toLocaleString("en-US")} events/s`, oursValue, { atLeast: floor })
    ],
    note: [`${(ours.extra.eventsPerAppend ?? Number.NaN).toFixed(1)} events per append`, ...failures].join(
      "; "
    )
  }
}

export const eventAppend: Scenario = {
  id: "append",
  title: "3. Event append: streaming content deltas",
  run: async ({ services, size, rounds, log }: ScenarioContext) => {
    const work: Workload = { runs: sized(size, 100, 5), deltasPerRun: sized(size, 1000, 40) }
    const comparisons: Comparison[] = []
    const notes = [
      `${work.runs} runs × ${work.deltasPerRun} deltas (${work.runs * work.deltasPerRun} events) per round, one step ` +
        `per run, a yield to the event loop every ${DELTAS_PER_TICK} deltas; worker concurrency ${work.runs}, ` +
        `Postgres pool ${POOL_SIZE}; timed from the worker's start until every run is stored as succeeded.`,
      "Postgres ceiling: the adapter's append statement as captured from the Baton round, replayed with the same " +
        `batch sizes by ${work.runs} concurrent chains (one per run) on a ${POOL_SIZE}-connection pg.Pool, one ` +
        "statement per append; lease check off ($3 null), everything else as the engine sent it. (Not pgbench: " +
        "the statement's version, seq and seq arrays change with every append.)",
      "Redis ceiling: the adapter's Lua append (EVALSHA) as captured, replayed the same way on one ioredis " +
        "connection (concurrent chains pipeline on it); guards off (g = 0), the log-length check kept."
    ]
    if (services.postgresUrl === null)
      comparisons.push(unavailable({ ...BASE, backend: "postgres", referenceName: "ceiling" }, "no Postgres"))
    else {
      const recorder = pgAppendRecorder()
      log(`append/postgres: ${work.runs} runs × ${work.deltasPerRun} deltas, ${rounds} rounds`)
      const [ours, ceiling] = await interleave(
        rounds,
        [
          batonContender("postgres", services.postgresUrl, work, recorder),
          postgresCeiling(services.postgresUrl, work, recorder)
        ],
        log
      )
      comparisons.push(compare("postgres", ours!, ceiling!, 15_000))
    }
    const redisAdapter = await loadRedisAdapter()
    const redisBase = { ...BASE, backend: "redis", referenceName: "ceiling" }
    if (services.redisUrl === null) comparisons.push(unavailable(redisBase, "no Redis"))
    else if (typeof redisAdapter === "string")
      comparisons.push(unavailable(redisBase, `adapter not available (${redisAdapter})`))
    else {
      const recorder = redisAppendRecorder()
      log(`append/redis: ${work.runs} runs × ${work.deltasPerRun} deltas, ${rounds} rounds`)
      const [ours, ceiling] = await interleave(
        rounds,
        [
          batonContender("redis", services.redisUrl, work, recorder),
          redisCeiling(services.redisUrl, work, recorder)
        ],
        log
      )
      comparisons.push(compare("redis", ours!, ceiling!, 30_000))
    }
    return { comparisons, notes }
  }
}
