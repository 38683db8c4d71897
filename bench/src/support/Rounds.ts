/**
 * Interleaved rounds: ours, peer, ours, peer… so that load from the other
 * work on the machine falls on every contender alike; each contender's figure
 * is the median of its rounds.
 */
import { median, spread } from "./Stats.js"

export interface Measurement {
  /** The figure the scenario reports (runs/s, ms, events/s…). */
  readonly value: number
  /** Storage round trips per run in this round, when counted. */
  readonly roundTripsPerRun?: number
  /** Other figures of the round, by name (p99, bytes per connection…). */
  readonly extra?: Readonly<Record<string, number>>
}

export interface Contender {
  readonly name: string
  readonly measure: () => Promise<Measurement>
}

export interface ContenderSummary {
  readonly name: string
  readonly rounds: ReadonlyArray<Measurement>
  readonly value: number
  readonly spread: number
  readonly roundTripsPerRun: number | null
  /** Median of each extra figure. */
  readonly extra: Readonly<Record<string, number>>
  /** Why it has no figure (it threw), else null. */
  readonly failure: string | null
}

const summarize = (name: string, rounds: ReadonlyArray<Measurement>, failure: string | null) => {
  const extraNames = new Set(rounds.flatMap((r) => Object.keys(r.extra ?? {})))
  const extra: Record<string, number> = {}
  for (const key of extraNames) extra[key] = median(rounds.map((r) => r.extra?.[key] ?? Number.NaN))
  const trips = rounds.flatMap((r) => (r.roundTripsPerRun === undefined ? [] : [r.roundTripsPerRun]))
  return {
    name,
    rounds,
    value: median(rounds.map((r) => r.value)),
    spread: spread(rounds.map((r) => r.value)),
    roundTripsPerRun: trips.length === 0 ? null : median(trips),
    extra,
    failure
  }
}

/** `--only`: contenders whose name does not contain it are skipped (profiling one contender). */
let contenderFilter: string | null = null
export const setContenderFilter = (filter: string | null): void => {
  contenderFilter = filter
}

/**
 * Runs `rounds` rounds of every contender in turn. A contender that throws
 * stops being measured (its failure is reported); the others carry on.
 */
export const interleave = async (
  rounds: number,
  contenders: ReadonlyArray<Contender>,
  log: (line: string) => void
): Promise<ReadonlyArray<ContenderSummary>> => {
  const results = contenders.map(() => [] as Measurement[])
  const failures: Array<string | null> = contenders.map((c) =>
    contenderFilter === null || c.name.includes(contenderFilter) ? null : "skipped (--only)"
  )
  for (let round = 1; round <= rounds; round++) {
    for (const [i, contender] of contenders.entries()) {
      if (failures[i] !== null) continue
      try {
        const m = await contender.measure()
        results[i]!.push(m)
        log(`  round ${round} ${contender.name}: ${m.value.toFixed(2)}`)
      } catch (error) {
        failures[i] = error instanceof Error ? error.message : String(error)
        log(`  round ${round} ${contender.name}: failed: ${failures[i]}`)
      }
    }
  }
  return contenders.map((c, i) => summarize(c.name, results[i]!, failures[i]!))
}

/** A count that resolves a promise when it reaches its target (handlers counting their calls). */
export class Countdown {
  private count = 0
  private resolveDone: () => void = () => {}
  readonly done: Promise<void>
  constructor(readonly target: number) {
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve
    })
    if (target <= 0) this.resolveDone()
  }
  tick(): void {
    if (++this.count === this.target) this.resolveDone()
  }
  get value(): number {
    return this.count
  }
}

/** Runs `task(i)` for i in [0, total) with at most `parallel` in flight. */
export const runPool = async (
  total: number,
  parallel: number,
  task: (index: number) => Promise<void>
): Promise<void> => {
  let next = 0
  const lane = async () => {
    while (next < total) await task(next++)
  }
  await Promise.all(Array.from({ length: Math.min(parallel, total) }, lane))
}
