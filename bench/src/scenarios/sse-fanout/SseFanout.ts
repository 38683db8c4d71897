/**
 * Scenario 4, SSE fan-out: N subscribers (1,000 and 10,000) of one run on
 * one server process, Baton's stream against a bare `node:http` SSE server
 * doing the same, each in a child process of its own. Measured: the server's
 * resident memory per connection (after GC, connected minus before), and
 * the latency from an event to each client, p50 and p99.
 */
import { type ChildProcess, fork } from "node:child_process"
import { fileURLToPath } from "node:url"
import type { Comparison } from "../../support/Report.js"
import { goal } from "../../support/Report.js"
import { type Contender, interleave } from "../../support/Rounds.js"
import { type Scenario, type ScenarioContext, type Size, unavailable } from "../../support/Scenario.js"
import { percentile } from "../../support/Stats.js"
import type { FromServer, MemoryReport, ToServer } from "./Protocol.js"
import { openSubscribers } from "./SseClients.js"

/** Events per round, and their spacing (the smoke size sends a few, quickly). */
const eventsOf = (size: Size) =>
  size === "smoke" ? { count: 3, intervalMs: 50 } : { count: 20, intervalMs: 250 }
/** After the last event, how long undelivered frames are waited for. */
const DELIVERY_TIMEOUT_MS = 60_000
/** …or until no frame arrived for this long (the rest went with dropped streams). */
const DELIVERY_STALL_MS = 10_000

const subscriberCounts = (size: Size): ReadonlyArray<number> =>
  size === "smoke"
    ? [20]
    : size === "full"
      ? [1000, 10_000]
      : [Math.max(20, Math.round(1000 * size)), Math.max(20, Math.round(10_000 * size))]

/** A server child and a way to ask it something and wait for its answer. */
class ServerProcess {
  private readonly child: ChildProcess
  private readonly waiting = new Map<FromServer["type"], (message: FromServer) => void>()
  private readonly exited: Promise<number | null>

  constructor(script: string, args: ReadonlyArray<string>) {
    this.child = fork(fileURLToPath(new URL(script, import.meta.url)), [...args], {
      execArgv: ["--import", "tsx", "--conditions=@baton/source", "--expose-gc"],
      stdio: ["ignore", "inherit", "inherit", "ipc"]
    })
    this.child.on("message", (message: FromServer) => {
      const resolve = this.waiting.get(message.type)
      this.waiting.delete(message.type)
      resolve?.(message)
    })
    this.exited = new Promise((resolve) => this.child.once("exit", resolve))
  }

  next<T extends FromServer["type"]>(
    type: T,
    timeoutMs = 120_000
  ): Promise<Extract<FromServer, { type: T }>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server: no ${type} in ${timeoutMs} ms`)), timeoutMs)
      this.waiting.set(type, (message) => {
        clearTimeout(timer)
        resolve(message as Extract<FromServer, { type: T }>)
      })
      void this.exited.then((code) => reject(new Error(`server exited (${code}) before ${type}`)))
    })
  }

  send(message: ToServer): void {
    this.child.send(message)
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return
    this.send({ type: "stop" })
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 10_000)
    await this.exited
    clearTimeout(timer)
  }
}

const describeRefusals = (refused: ReadonlyMap<string, number>): string =>
  [...refused].map(([reason, n]) => `${n} × ${reason}`).join(", ")

/** Refusal reasons by contender, of the last round that had any. */
const refusals = new Map<string, string>()

const fanoutContender = (
  name: string,
  script: string,
  args: ReadonlyArray<string>,
  subscribers: number,
  events: { readonly count: number; readonly intervalMs: number }
): Contender => ({
  name,
  measure: async () => {
    const server = new ServerProcess(script, args)
    const ready = server.next("ready")
    try {
      const { url, headers } = await ready
      const memory = server.next("memory")
      server.send({ type: "memory" })
      const before: MemoryReport = await memory
      const clients = await openSubscribers(url, headers, subscribers)
      try {
        // Refused subscriptions are a result (reported), not a failed round; none connected is.
        if (clients.connected === 0)
          throw new Error(`no subscription succeeded: ${describeRefusals(clients.refused)}`)
        if (clients.refused.size > 0) refusals.set(name, describeRefusals(clients.refused))
        await new Promise((resolve) => setTimeout(resolve, 1000))
        const memoryAfter = server.next("memory")
        server.send({ type: "memory" })
        const after: MemoryReport = await memoryAfter
        // Streams the server dropped before the memory report hold no memory any more: not counted.
        const live = clients.connected - clients.lost()
        if (live <= 0) throw new Error("every subscription was dropped before the events")
        const emitted = server.next("emitted")
        const trips = script.includes("Baton") ? server.next("round-trips") : null
        server.send({ type: "emit", ...events })
        await emitted
        const roundTrips = trips === null ? null : (await trips).count
        const expected = events.count * clients.connected
        const deadline = Date.now() + DELIVERY_TIMEOUT_MS
        let seen = clients.delivered()
        let lastProgressAt = Date.now()
        while (
          clients.delivered() < expected &&
          Date.now() < deadline &&
          Date.now() - lastProgressAt < DELIVERY_STALL_MS
        ) {
          await new Promise((resolve) => setTimeout(resolve, 20))
          if (clients.delivered() > seen) {
            seen = clients.delivered()
            lastProgressAt = Date.now()
          }
        }
        return {
          value: (after.rss - before.rss) / live,
          ...(roundTrips === null ? {} : { roundTripsPerRun: roundTrips }),
          extra: {
            heapPerConnection:
              (after.heapUsed + after.external - before.heapUsed - before.external) / subscribers,
            emitP50: percentile(clients.fromEmit, 50),
            emitP99: percentile(clients.fromEmit, 99),
            appendP50: percentile(clients.fromAppend, 50),
            appendP99: percentile(clients.fromAppend, 99),
            undelivered: expected - clients.delivered(),
            refused: subscribers - clients.connected,
            lostBeforeEvents: clients.connected - live,
            lost: clients.lost()
          }
        }
      } finally {
        clients.close()
      }
    } finally {
      await server.stop()
    }
  }
})

const BASE = { scenario: "sse", backend: "postgres" } as const

export const sseFanout: Scenario = {
  id: "sse",
  title: "4. SSE fan-out: subscribers of one run on one process",
  run: async ({ services, size, rounds, log }: ScenarioContext) => {
    const comparisons: Comparison[] = []
    const events = eventsOf(size)
    const notes = [
      `Per round: a fresh server process; N subscribers opened 200 at a time on the run's stream; server RSS ` +
        `(after two GCs) connected minus before, per connection; then ${events.count} events ${events.intervalMs} ms apart ` +
        "to all N, each carrying its emit time. Clients live in the bench process (same machine, same clock).",
      "emit → client: from the handler's `step.progress` call (bare: the write) to the client's read; it includes " +
        "Baton's progress coalescing (progressFlushMs, 25 ms). event → client: from the event's stored `timestamp` " +
        "(ms resolution) to the read; the goal is judged on it.",
      "At 10,000 subscribers each contender runs one round: a Baton round takes minutes. Refused subscriptions " +
        "(e.g. 503 when a stream waited 5 s for a pool connection) and streams the server dropped are counted; " +
        "memory is per subscriber still connected when it was read, latencies are over the frames delivered.",
      "Round trips (in the memory row): statements per event the Baton server ran while emitting, for all N " +
        "streams together (feed re-reads included); reads after the last event was handed to progress are not counted."
    ]
    if (services.postgresUrl === null) {
      comparisons.push(
        unavailable(
          {
            ...BASE,
            metric: "memory per connection",
            unit: "bytes",
            direction: "lower-is-better",
            referenceName: "bare node:http"
          },
          "no Postgres"
        )
      )
      return { comparisons, notes }
    }
    for (const subscribers of subscriberCounts(size)) {
      // A 10,000-subscriber Baton round takes minutes (see the notes); one round keeps `pnpm bench` bounded.
      const roundsHere = subscribers >= 10_000 ? 1 : rounds
      refusals.clear()
      log(`sse/postgres: ${subscribers} subscribers, ${roundsHere} rounds`)
      const [ours, bare] = await interleave(
        roundsHere,
        [
          fanoutContender(
            "baton (postgres)",
            "./BatonSseServer.ts",
            [services.postgresUrl],
            subscribers,
            events
          ),
          fanoutContender("bare node:http", "./BareSseServer.ts", [], subscribers, events)
        ],
        log
      )
      const failures = [ours!, bare!].flatMap((c) => (c.failure === null ? [] : [`${c.name}: ${c.failure}`]))
      const note = [
        `refused subscriptions ${ours!.extra.refused ?? "n/a"} vs ${bare!.extra.refused ?? "n/a"}, ` +
          `dropped before the events ${ours!.extra.lostBeforeEvents ?? "n/a"} vs ${bare!.extra.lostBeforeEvents ?? "n/a"}, ` +
          `undelivered frames ${ours!.extra.undelivered ?? "n/a"} vs ${bare!.extra.undelivered ?? "n/a"}, ` +
          `lost connections ${ours!.extra.lost ?? "n/a"} vs ${bare!.extra.lost ?? "n/a"}`,
        ...[...refusals].map(([who, why]) => `${who} refused: ${why}`),
        ...((ours!.extra.lostBeforeEvents ?? 0) > 0
          ? ["not a per-connection cost: RSS still holds what the dropped streams used"]
          : []),
        ...failures
      ].join("; ")
      const value = (c: typeof ours, key: string | null) =>
        c!.failure !== null ? null : key === null ? c!.value : (c!.extra[key] ?? null)
      const row = (
        metric: string,
        unit: string,
        key: string | null,
        extra: Partial<Comparison> = {}
      ): Comparison => ({
        ...BASE,
        metric: `${metric} @ ${subscribers.toLocaleString("en-US")}`,
        unit,
        direction: "lower-is-better",
        ours: value(ours, key),
        referenceName: "bare node:http",
        reference: value(bare, key),
        ...extra
      })
      const memoryRatio = (() => {
        const o = value(ours, null)
        const b = value(bare, null)
        return o === null || b === null || b === 0 ? null : o / b
      })()
      // Holding N subscribers is part of the goal: a server that refused or dropped some did not meet it.
      const heldAll =
        ours!.failure === null &&
        ours!.extra.refused === 0 &&
        ours!.extra.lost === 0 &&
        ours!.extra.undelivered === 0
      const memoryGoal = goal("≤ 1.3× bare, every subscriber served", memoryRatio, { atMost: 1.3 })
      comparisons.push(
        row("server RSS per connection", "bytes", null, {
          spread: ours!.spread,
          roundTrips: { ours: ours!.roundTripsPerRun, reference: null },
          ...(subscribers >= 10_000
            ? { goals: [{ ...memoryGoal, met: memoryGoal.met === null ? null : memoryGoal.met && heldAll }] }
            : {}),
          note
        }),
        row("server heap+external per connection", "bytes", "heapPerConnection"),
        row("event → client p50", "ms", "appendP50", heldAll ? {} : { note: "over the frames delivered" }),
        row("event → client p99", "ms", "appendP99", {
          ...(subscribers === 1000
            ? { goals: [goal("p99 ≤ 50 ms", value(ours, "appendP99"), { atMost: 50 })] }
            : {})
        }),
        row("emit → client p50", "ms", "emitP50"),
        row("emit → client p99", "ms", "emitP99")
      )
    }
    return { comparisons, notes }
  }
}
