/** What every scenario file exports, and the settings of one bench run. */
import type { Comparison } from "./Report.js"
import type { Services } from "./Services.js"

/**
 * `smoke`: the CI size (seconds, correctness only); `full`: the sizes of the
 * issue; a number scales the full sizes (0.1 = a tenth).
 */
export type Size = "smoke" | "full" | number

export interface ScenarioContext {
  readonly services: Services
  readonly size: Size
  /** Interleaved rounds per contender (the median is reported). */
  readonly rounds: number
  readonly log: (line: string) => void
}

export interface ScenarioOutcome {
  readonly comparisons: ReadonlyArray<Comparison>
  /** Lines for RESULTS.md below the table: what was measured exactly, what was skipped and why. */
  readonly notes: ReadonlyArray<string>
}

export interface Scenario {
  /** The command-line name: `pnpm bench:<id>`. */
  readonly id: string
  readonly title: string
  readonly run: (context: ScenarioContext) => Promise<ScenarioOutcome>
}

/** The count for this size: `smoke` at smoke size, else `full` scaled (at least `smoke`). */
export const sized = (size: Size, full: number, smoke: number): number =>
  size === "smoke" ? smoke : size === "full" ? full : Math.max(smoke, Math.round(full * size))

/** The row of a contender that could not run on a backend (no service, adapter not ready). */
export const unavailable = (
  base: Pick<Comparison, "scenario" | "backend" | "metric" | "unit" | "direction" | "referenceName">,
  reason: string
): Comparison => ({ ...base, ours: null, reference: null, note: reason })
