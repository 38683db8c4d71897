/**
 * Scenario 1, throughput: N runs of a one-step no-op handler (create → claim
 * → step → succeed) against N no-op jobs of pg-boss and graphile-worker on
 * Postgres, and of BullMQ on Redis. Every contender gets the same worker
 * concurrency, the same number of producers creating one job at a time, and
 * is timed from the first create until every job is recorded as complete.
 */
import { Worker as BullWorker, Queue } from "bullmq"
import { Logger, run as runGraphileWorker } from "graphile-worker"
import PgBoss from "pg-boss"
import { type Backend, loadRedisAdapter, startBaton } from "../support/Baton.js"
import { goal } from "../support/Report.js"
import { type Contender, type ContenderSummary, Countdown, interleave, runPool } from "../support/Rounds.js"
import { startCounting } from "../support/RoundTrips.js"
import { type Scenario, type ScenarioContext, sized, unavailable } from "../support/Scenario.js"
import {
  adminQuery,
  bullConnection,
  dropRedisPrefix,
  dropSchema,
  freshName,
  waitUntil
} from "../support/Services.js"

/** Worker concurrency of every contender (Baton's default). */
const CONCURRENCY = 10
/** Producers creating one job each at a time. */
const PRODUCERS = 10

const perSecond = (count: number, startedAt: number): number =>
  count / ((performance.now() - startedAt) / 1000)

const batonContender = (backend: Backend, url: string, runs: number): Contender => ({
  name: `baton (${backend})`,
  measure: async () => {
    const handled = new Countdown(runs)
    const baton = await startBaton({
      backend,
      url,
      handlers: {
        noop: async (run) => {
          await run.step("noop", () => undefined)
          handled.tick()
        }
      }
    })
    try {
      const worker = await baton.engine.startWorker({ concurrency: CONCURRENCY })
      const roundTrips = startCounting(backend === "postgres" ? "pg" : "redis")
      const startedAt = performance.now()
      await runPool(runs, PRODUCERS, async () => {
        await baton.engine.createRun({ handler: "noop", input: null })
      })
      await handled.done
      // An execution leaves `active()` once its last write (run.worker.succeeded) is stored.
      await waitUntil(async () => worker.active().length === 0, "the last runs to be stored as succeeded", {
        everyMs: 1
      })
      return { value: perSecond(runs, startedAt), roundTripsPerRun: roundTrips() / runs }
    } finally {
      await baton.close()
    }
  }
})

const pgBossContender = (url: string, jobs: number): Contender => ({
  name: "pg-boss",
  measure: async () => {
    const schema = freshName("pgboss")
    const queue = "noop"
    const handled = new Countdown(jobs)
    const boss = new PgBoss({ connectionString: url, schema, max: 10, schedule: false, supervise: false })
    boss.on("error", () => {})
    try {
      await boss.start()
      await boss.createQueue(queue)
      // pg-boss 10 has no worker concurrency option: concurrency is that many work() loops. A loop
      // waits its polling interval (0.5 s at least) after every fetch, which caps it at 2 jobs/s;
      // `notifyWorker` after a job (its public API for "more work is there") lets it fetch again
      // at once, as a user after throughput would do.
      for (let i = 0; i < CONCURRENCY; i++) {
        const workerId: string = await boss.work(
          queue,
          { batchSize: 1, pollingIntervalSeconds: 0.5 },
          async () => {
            handled.tick()
            boss.notifyWorker(workerId)
          }
        )
      }
      const roundTrips = startCounting("pg")
      const startedAt = performance.now()
      await runPool(jobs, PRODUCERS, async () => {
        await boss.send(queue, {})
      })
      await handled.done
      await waitUntil(async () => {
        const [row] = await adminQuery<{ n: number }>(
          url,
          `SELECT count(*)::int AS n FROM "${schema}".job WHERE name = $1 AND state = 'completed'`,
          [queue]
        )
        return row?.n === jobs
      }, "pg-boss jobs to be completed")
      return { value: perSecond(jobs, startedAt), roundTripsPerRun: roundTrips() / jobs }
    } finally {
      await boss.stop({ graceful: false, wait: true })
      await dropSchema(url, schema)
    }
  }
})

const graphileWorkerContender = (url: string, jobs: number): Contender => ({
  name: "graphile-worker",
  measure: async () => {
    const schema = freshName("gw")
    const handled = new Countdown(jobs)
    const runner = await runGraphileWorker({
      connectionString: url,
      schema,
      concurrency: CONCURRENCY,
      maxPoolSize: 10,
      noHandleSignals: true,
      logger: new Logger(() => () => {}),
      taskList: {
        noop: async () => {
          handled.tick()
        }
      }
    })
    try {
      const roundTrips = startCounting("pg")
      const startedAt = performance.now()
      await runPool(jobs, PRODUCERS, async () => {
        await runner.addJob("noop", {})
      })
      await handled.done
      // graphile-worker deletes a job once it completes.
      await waitUntil(async () => {
        const [row] = await adminQuery<{ n: number }>(
          url,
          `SELECT count(*)::int AS n FROM "${schema}"._private_jobs`
        )
        return row?.n === 0
      }, "graphile-worker jobs to be completed")
      return { value: perSecond(jobs, startedAt), roundTripsPerRun: roundTrips() / jobs }
    } finally {
      await runner.stop()
      await dropSchema(url, schema)
    }
  }
})

const bullMqContender = (url: string, jobs: number): Contender => ({
  name: "BullMQ",
  measure: async () => {
    const prefix = freshName("bullmq")
    const connection = bullConnection(url)
    const queue = new Queue("noop", { connection, prefix })
    const completed = new Countdown(jobs)
    const worker = new BullWorker("noop", async () => {}, { connection, prefix, concurrency: CONCURRENCY })
    // "completed" fires once BullMQ has moved the job to its completed set.
    worker.on("completed", () => completed.tick())
    try {
      await worker.waitUntilReady()
      const roundTrips = startCounting("redis")
      const startedAt = performance.now()
      await runPool(jobs, PRODUCERS, async () => {
        await queue.add("noop", {})
      })
      await completed.done
      return { value: perSecond(jobs, startedAt), roundTripsPerRun: roundTrips() / jobs }
    } finally {
      await worker.close(true)
      await queue.close()
      await dropRedisPrefix(url, prefix)
    }
  }
})

const BASE = {
  scenario: "throughput",
  metric: "runs/s",
  unit: "runs/s",
  direction: "higher-is-better"
} as const

const compare = (
  backend: Backend,
  ours: ContenderSummary,
  peer: ContenderSummary,
  goalRatio: number,
  label: string
) => {
  const ratio = ours.failure === null && peer.failure === null ? ours.value / peer.value : null
  const failures = [ours, peer].flatMap((c) => (c.failure === null ? [] : [`${c.name} failed: ${c.failure}`]))
  return {
    ...BASE,
    backend,
    ours: ours.failure === null ? ours.value : null,
    referenceName: label,
    reference: peer.failure === null ? peer.value : null,
    roundTrips: { ours: ours.roundTripsPerRun, reference: peer.roundTripsPerRun },
    spread: ours.spread,
    goals: [goal(`≥ ${goalRatio.toFixed(1)}× ${peer.name}`, ratio, { atLeast: goalRatio })],
    ...(failures.length === 0 ? {} : { note: failures.join("; ") })
  }
}

export const throughput: Scenario = {
  id: "throughput",
  title: "1. Throughput: one-step no-op runs vs no-op jobs",
  run: async ({ services, size, rounds, log }: ScenarioContext) => {
    const runs = sized(size, 10_000, 50)
    const comparisons = []
    const notes = [
      `${runs} runs / jobs per round; worker concurrency ${CONCURRENCY} for every contender; ${PRODUCERS} producers ` +
        "creating one at a time; timed from the first create until every job is stored as complete " +
        "(Baton: `run.worker.succeeded` written; pg-boss: state completed; graphile-worker: job row deleted; BullMQ: `completed` event).",
      "pg-boss 10 has no concurrency option: it gets that many `work()` loops of batch size 1, each woken with " +
        "`notifyWorker` after a job (otherwise every loop sleeps its 0.5 s minimum poll after each fetch: 20 jobs/s)."
    ]
    if (services.postgresUrl === null) {
      comparisons.push(unavailable({ ...BASE, backend: "postgres", referenceName: "pg-boss" }, "no Postgres"))
    } else {
      const url = services.postgresUrl
      log(`throughput/postgres: ${runs} runs, ${rounds} rounds`)
      const [ours, boss, gw] = await interleave(
        rounds,
        [
          batonContender("postgres", url, runs),
          pgBossContender(url, runs),
          graphileWorkerContender(url, runs)
        ],
        log
      )
      comparisons.push(compare("postgres", ours!, boss!, 1.0, "pg-boss 10.4.2"))
      comparisons.push(compare("postgres", ours!, gw!, 0.5, "graphile-worker 0.16.6"))
    }
    const redisAdapter = await loadRedisAdapter()
    const redisBase = { ...BASE, backend: "redis", referenceName: "BullMQ 6.7.0" }
    if (services.redisUrl === null) comparisons.push(unavailable(redisBase, "no Redis"))
    else if (typeof redisAdapter === "string")
      comparisons.push(unavailable(redisBase, `adapter not available (${redisAdapter})`))
    else {
      const url = services.redisUrl
      log(`throughput/redis: ${runs} runs, ${rounds} rounds`)
      const [ours, bull] = await interleave(
        rounds,
        [batonContender("redis", url, runs), bullMqContender(url, runs)],
        log
      )
      comparisons.push(compare("redis", ours!, bull!, 0.5, "BullMQ 6.7.0"))
    }
    return { comparisons, notes }
  }
}
