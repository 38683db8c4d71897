/**
 * Scenario 2, dispatch latency on an idle system, graphile-worker's method:
 * one job at a time, the time from the create call to the handler starting,
 * the next job only once the previous one is complete. Baton is measured
 * with its worker in the creating engine (nudged in-process), with its worker
 * in a second engine on the same store (it learns of the run by polling, as a
 * worker in another process does), and over HTTP: POST /v1/runs, then the
 * run's SSE stream, to the first event and to `run.started`.
 */
import { randomUUID } from "node:crypto"
import { Worker as BullWorker, Queue } from "bullmq"
import { EventSourceParserStream } from "eventsource-parser/stream"
import { Logger, run as runGraphileWorker } from "graphile-worker"
import { type Backend, type BatonInstance, loadRedisAdapter, startBaton } from "../support/Baton.js"
import { serveBaton } from "../support/HttpServer.js"
import { type Comparison, goal } from "../support/Report.js"
import { type Contender, type ContenderSummary, interleave } from "../support/Rounds.js"
import { type CountedStore, startCounting } from "../support/RoundTrips.js"
import { type Scenario, type ScenarioContext, sized, unavailable } from "../support/Scenario.js"
import {
  adminQuery,
  bullConnection,
  dropRedisPrefix,
  dropSchema,
  freshName,
  waitUntil
} from "../support/Services.js"
import { percentile, wallClockMs } from "../support/Stats.js"

/** Untimed jobs before each round: connections opened, statements prepared, code warm. */
const WARM_UP = 10
const warmUpOf = (jobs: number) => Math.min(WARM_UP, jobs)

/** Latency samples of one contender, pooled over its rounds (a p99 needs every sample). */
class Samples {
  readonly byName = new Map<string, number[]>()
  add(name: string, ms: number): void {
    const list = this.byName.get(name) ?? []
    list.push(ms)
    this.byName.set(name, list)
  }
  p(name: string, p: number): number {
    return percentile(this.byName.get(name) ?? [], p)
  }
}

/** A resolver the handler calls with the time it started; one job in flight at a time. */
class StartSignal {
  private resolve: ((at: number) => void) | null = null
  next(): Promise<number> {
    return new Promise((resolve) => {
      this.resolve = resolve
    })
  }
  fire(): void {
    this.resolve?.(wallClockMs())
    this.resolve = null
  }
}

/** Times `jobs` sequential jobs (after a warm-up) and returns the round's p50 and p99 of `timed`. */
const sequential = async (
  jobs: number,
  store: CountedStore,
  sample: (record: boolean) => Promise<void>,
  samples: Samples,
  timed: string
) => {
  for (let i = 0; i < warmUpOf(jobs); i++) await sample(false)
  const before = samples.byName.get(timed)?.length ?? 0
  const roundTrips = startCounting(store)
  for (let i = 0; i < jobs; i++) await sample(true)
  const round = samples.byName.get(timed)?.slice(before) ?? []
  return {
    value: percentile(round, 50),
    roundTripsPerRun: roundTrips() / jobs,
    extra: { p99: percentile(round, 99) }
  }
}

const batonContender = (
  backend: Backend,
  url: string,
  jobs: number,
  samples: Samples,
  worker: "same-engine" | "other-engine"
): Contender => ({
  name: `baton (${backend}, worker in ${worker === "same-engine" ? "the same" : "another"} engine)`,
  measure: async () => {
    const started = new StartSignal()
    const handlers = { probe: () => started.fire() }
    const api = await startBaton({ backend, url, handlers })
    let workerSide: BatonInstance = api
    try {
      if (worker === "other-engine")
        workerSide = await startBaton({ backend, url, handlers, joinNamespace: api.namespace })
      const handle = await workerSide.engine.startWorker({ concurrency: 10 })
      return await sequential(
        jobs,
        backend === "postgres" ? "pg" : "redis",
        async (record) => {
          const at = started.next()
          const createdAt = wallClockMs()
          await api.engine.createRun({ handler: "probe", input: null })
          const startedAt = await at
          if (record) samples.add("started", startedAt - createdAt)
          await waitUntil(async () => handle.active().length === 0, "the run to end", { everyMs: 1 })
        },
        samples,
        "started"
      )
    } finally {
      if (workerSide !== api) await workerSide.close()
      await api.close()
    }
  }
})

/** Reads an SSE response until `until` says stop; calls `onEvent` with each event's data. */
const readSse = async (response: Response, onEvent: (data: string) => boolean): Promise<void> => {
  if (response.body === null) throw new Error("SSE response without a body")
  const events = response.body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream())
  const reader = events.getReader()
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done || onEvent(value.data)) return
    }
  } finally {
    await reader.cancel().catch(() => {})
  }
}

const batonHttpContender = (backend: Backend, url: string, jobs: number, samples: Samples): Contender => ({
  name: `baton (${backend}, HTTP + SSE)`,
  measure: async () => {
    const baton = await startBaton({ backend, url, handlers: { probe: () => {} } })
    const http = await serveBaton(baton.engine)
    try {
      const handle = await baton.engine.startWorker({ concurrency: 10 })
      const headers = { authorization: `Bearer ${http.key}` }
      return await sequential(
        jobs,
        backend === "postgres" ? "pg" : "redis",
        async (record) => {
          const createdAt = wallClockMs()
          const created = await fetch(`${http.baseUrl}/v1/runs`, {
            method: "POST",
            // The HTTP API requires an Idempotency-Key on every create.
            headers: { ...headers, "content-type": "application/json", "idempotency-key": randomUUID() },
            body: JSON.stringify({ handler: "probe", input: null })
          })
          if (created.status !== 201)
            throw new Error(`POST /v1/runs: ${created.status} ${await created.text()}`)
          const { id } = (await created.json()) as { id: string }
          const stream = await fetch(`${http.baseUrl}/v1/runs/${id}/events/stream`, { headers })
          let first = true
          await readSse(stream, (data) => {
            const now = wallClockMs()
            if (first && record) samples.add("first-sse", now - createdAt)
            first = false
            const isStarted = (JSON.parse(data) as { type: string }).type === "run.started"
            if (isStarted && record) samples.add("started-sse", now - createdAt)
            return isStarted
          })
          await waitUntil(async () => handle.active().length === 0, "the run to end", { everyMs: 1 })
        },
        samples,
        "first-sse"
      )
    } finally {
      await http.close()
      await baton.close()
    }
  }
})

const graphileWorkerContender = (url: string, jobs: number, samples: Samples): Contender => ({
  name: "graphile-worker",
  measure: async () => {
    const schema = freshName("gw")
    const started = new StartSignal()
    const runner = await runGraphileWorker({
      connectionString: url,
      schema,
      concurrency: 10,
      maxPoolSize: 10,
      noHandleSignals: true,
      logger: new Logger(() => () => {}),
      taskList: { probe: async () => started.fire() }
    })
    try {
      return await sequential(
        jobs,
        "pg",
        async (record) => {
          const at = started.next()
          const createdAt = wallClockMs()
          await runner.addJob("probe", {})
          const startedAt = await at
          if (record) samples.add("started", startedAt - createdAt)
          await waitUntil(async () => {
            const [row] = await adminQuery<{ n: number }>(
              url,
              `SELECT count(*)::int AS n FROM "${schema}"._private_jobs`
            )
            return row?.n === 0
          }, "the job to complete")
        },
        samples,
        "started"
      )
    } finally {
      await runner.stop()
      await dropSchema(url, schema)
    }
  }
})

const bullMqContender = (url: string, jobs: number, samples: Samples): Contender => ({
  name: "BullMQ",
  measure: async () => {
    const prefix = freshName("bullmq")
    const connection = bullConnection(url)
    const queue = new Queue("probe", { connection, prefix })
    const started = new StartSignal()
    let completed: () => void = () => {}
    const worker = new BullWorker("probe", async () => started.fire(), {
      connection,
      prefix,
      concurrency: 10
    })
    worker.on("completed", () => completed())
    try {
      await worker.waitUntilReady()
      return await sequential(
        jobs,
        "redis",
        async (record) => {
          const at = started.next()
          const done = new Promise<void>((resolve) => {
            completed = resolve
          })
          const createdAt = wallClockMs()
          await queue.add("probe", {})
          const startedAt = await at
          if (record) samples.add("started", startedAt - createdAt)
          await done
        },
        samples,
        "started"
      )
    } finally {
      await worker.close(true)
      await queue.close()
      await dropRedisPrefix(url, prefix)
    }
  }
})

const BASE = { scenario: "dispatch", unit: "ms", direction: "lower-is-better" } as const

interface LatencyRow {
  readonly metric: string
  readonly ours: ContenderSummary
  readonly oursSamples: Samples
  readonly oursName: string
  readonly peer: ContenderSummary
  readonly peerSamples: Samples
  readonly judged: boolean
}

const latencyRows = (backend: Backend, row: LatencyRow): ReadonlyArray<Comparison> =>
  ([50, 99] as const).map((p) => {
    const ours = row.ours.failure === null ? row.oursSamples.p(row.oursName, p) : null
    const reference = row.peer.failure === null ? row.peerSamples.p("started", p) : null
    const bound = p === 50 ? 5 : 15
    const failures = [row.ours, row.peer].flatMap((c) =>
      c.failure === null ? [] : [`${c.name}: ${c.failure}`]
    )
    return {
      ...BASE,
      backend,
      metric: `${row.metric} p${p}`,
      ours,
      referenceName: `${row.peer.name} create → start`,
      reference,
      roundTrips: { ours: row.ours.roundTripsPerRun, reference: row.peer.roundTripsPerRun },
      spread: row.ours.spread,
      ...(row.judged && backend === "postgres"
        ? { goals: [goal(`p${p} ≤ ${bound} ms`, ours, { atMost: bound })] }
        : {}),
      ...(failures.length === 0 ? {} : { note: failures.join("; ") })
    }
  })

const runBackend = async (
  backend: Backend,
  url: string,
  jobsPerRound: number,
  rounds: number,
  log: (line: string) => void
): Promise<ReadonlyArray<Comparison>> => {
  const same = new Samples()
  const other = new Samples()
  const http = new Samples()
  const peer = new Samples()
  const peerContender =
    backend === "postgres"
      ? graphileWorkerContender(url, jobsPerRound, peer)
      : bullMqContender(url, jobsPerRound, peer)
  const [sameSummary, otherSummary, httpSummary, peerSummary] = await interleave(
    rounds,
    [
      batonContender(backend, url, jobsPerRound, same, "same-engine"),
      // A polling worker takes ~pollIntervalMs a job: a fifth of the samples say as much in a fifth of the time.
      batonContender(backend, url, Math.max(1, Math.ceil(jobsPerRound / 5)), other, "other-engine"),
      batonHttpContender(backend, url, jobsPerRound, http),
      peerContender
    ],
    log
  )
  const peerRow = { peer: peerSummary!, peerSamples: peer }
  return [
    ...latencyRows(backend, {
      metric: "create → run.started (worker in the creating engine)",
      ours: sameSummary!,
      oursSamples: same,
      oursName: "started",
      judged: true,
      ...peerRow
    }),
    ...latencyRows(backend, {
      metric: "create → run.started (worker in another engine: polls)",
      ours: otherSummary!,
      oursSamples: other,
      oursName: "started",
      judged: false,
      ...peerRow
    }),
    ...latencyRows(backend, {
      metric: "HTTP create → first SSE event",
      ours: httpSummary!,
      oursSamples: http,
      oursName: "first-sse",
      judged: false,
      ...peerRow
    }),
    ...latencyRows(backend, {
      metric: "HTTP create → run.started over SSE",
      ours: httpSummary!,
      oursSamples: http,
      oursName: "started-sse",
      judged: false,
      ...peerRow
    })
  ]
}

export const dispatchLatency: Scenario = {
  id: "dispatch",
  title: "2. Dispatch latency: sequential creates on an idle system",
  run: async ({ services, size, rounds, log }: ScenarioContext) => {
    const total = sized(size, 1000, 5)
    const jobsPerRound = Math.max(1, Math.ceil(total / rounds))
    const comparisons: Comparison[] = []
    const notes = [
      `${jobsPerRound * rounds} timed jobs per contender (${jobsPerRound} per round, after ${warmUpOf(jobsPerRound)} untimed), ` +
        "one at a time, each once the previous one is complete; percentiles over every sample of every round.",
      "create → run.started: from the create call to the handler's first line (the claim has committed " +
        "`run.started` by then). The reference is the peer's add-job → task start, graphile-worker's latency test.",
      "The worker-in-another-engine variant times a fifth as many jobs (each waits up to one 100 ms poll). Its " +
        "p50 sits near a full poll rather than half: the next create comes right after the previous run ended, " +
        "when the worker has just polled.",
      "Round trips per run count everything each contender sent while the timed jobs ran (idle polls included)."
    ]
    if (services.postgresUrl === null)
      comparisons.push(
        unavailable(
          { ...BASE, backend: "postgres", metric: "create → run.started", referenceName: "graphile-worker" },
          "no Postgres"
        )
      )
    else {
      log(`dispatch/postgres: ${jobsPerRound} jobs × ${rounds} rounds`)
      comparisons.push(...(await runBackend("postgres", services.postgresUrl, jobsPerRound, rounds, log)))
    }
    const redisAdapter = await loadRedisAdapter()
    const redisBase = { ...BASE, backend: "redis", metric: "create → run.started", referenceName: "BullMQ" }
    if (services.redisUrl === null) comparisons.push(unavailable(redisBase, "no Redis"))
    else if (typeof redisAdapter === "string")
      comparisons.push(unavailable(redisBase, `adapter not available (${redisAdapter})`))
    else {
      log(`dispatch/redis: ${jobsPerRound} jobs × ${rounds} rounds`)
      comparisons.push(...(await runBackend("redis", services.redisUrl, jobsPerRound, rounds, log)))
    }
    return { comparisons, notes }
  }
}
