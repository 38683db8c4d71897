/**
 * What a scenario measured and how it is shown: one line per comparison on
 * stdout while the bench runs, and the same rows as a Markdown table in
 * bench/RESULTS.md.
 */

/** Whether bigger is better for a metric; decides how a ratio is read against its goal. */
export type Direction = "higher-is-better" | "lower-is-better"

export interface Goal {
  /** As in the issue, e.g. "≥ 1.0× pg-boss" or "p99 ≤ 15 ms". */
  readonly text: string
  /** null when it could not be judged (no figure). */
  readonly met: boolean | null
}

export interface Comparison {
  readonly scenario: string
  /** `postgres` or `redis`. */
  readonly backend: string
  readonly metric: string
  readonly unit: string
  readonly direction: Direction
  /** Median of the rounds; null when not measured (reason in `note`). */
  readonly ours: number | null
  /** The peer or ceiling it is compared with, e.g. `pg-boss 10.4.2`. */
  readonly referenceName: string
  readonly reference: number | null
  /** Storage round trips per run (statements or commands): ours, reference. */
  readonly roundTrips?: { readonly ours: number | null; readonly reference: number | null }
  /** Spread of our rounds, (max - min) / median. */
  readonly spread?: number
  readonly goals?: ReadonlyArray<Goal>
  readonly note?: string
}

/** ours / reference, always "how many times the reference" (for latency a ratio > 1 is slower). */
export const ratioOf = (c: Comparison): number | null =>
  c.ours === null || c.reference === null || c.reference === 0 ? null : c.ours / c.reference

export const formatNumber = (value: number | null | undefined): string => {
  if (value === null || value === undefined || Number.isNaN(value)) return "n/a"
  const abs = Math.abs(value)
  if (abs >= 100) return Math.round(value).toLocaleString("en-US")
  if (abs >= 10) return value.toFixed(1)
  return value.toFixed(2)
}

const formatRatio = (ratio: number | null): string => (ratio === null ? "n/a" : `${ratio.toFixed(2)}×`)

const goalText = (goals: ReadonlyArray<Goal> | undefined): string =>
  (goals ?? []).map((g) => `${g.text}: ${g.met === null ? "n/a" : g.met ? "met" : "MISSED"}`).join("; ")

/** The line printed for a comparison; the smoke test looks for `ratio`. */
export const comparisonLine = (c: Comparison): string => {
  const trips =
    c.roundTrips === undefined
      ? ""
      : ` | round trips/run ${formatNumber(c.roundTrips.ours)} vs ${formatNumber(c.roundTrips.reference)}`
  const goals = c.goals === undefined || c.goals.length === 0 ? "" : ` | ${goalText(c.goals)}`
  const note = c.note === undefined ? "" : ` (${c.note})`
  return (
    `[${c.scenario}/${c.backend}] ${c.metric}: baton ${formatNumber(c.ours)} ${c.unit}` +
    ` | ${c.referenceName} ${formatNumber(c.reference)} ${c.unit} | ratio ${formatRatio(ratioOf(c))}` +
    `${trips}${goals}${note}`
  )
}

const cell = (text: string): string => text.replaceAll("|", "\\|")

const width = (text: string): number => [...text].length

/** A Markdown table with padded columns, as the repo's formatter (biome) writes it, so RESULTS.md passes lint. */
const markdownTable = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(3, width(h), ...rows.map((r) => width(r[i] ?? ""))))
  const line = (cells: ReadonlyArray<string>) =>
    `| ${cells.map((c, i) => c + " ".repeat(widths[i]! - width(c))).join(" | ")} |`
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n")
}

/** The Markdown table of comparisons for RESULTS.md. */
export const comparisonTable = (comparisons: ReadonlyArray<Comparison>): string => {
  const header = [
    "scenario",
    "backend",
    "metric",
    "baton",
    "reference",
    "ratio",
    "round trips/run (baton / ref)",
    "spread",
    "goals"
  ]
  const rows = comparisons.map((c) => {
    const trips =
      c.roundTrips === undefined
        ? ""
        : `${formatNumber(c.roundTrips.ours)} / ${formatNumber(c.roundTrips.reference)}`
    const ours = `${formatNumber(c.ours)} ${c.unit}`
    const reference = `${c.referenceName}: ${formatNumber(c.reference)} ${c.unit}`
    const spreadText = c.spread === undefined ? "" : `${Math.round(c.spread * 100)}%`
    const goals = [goalText(c.goals), c.note ?? ""].filter((s) => s !== "").join("; ")
    return [
      c.scenario,
      c.backend,
      c.metric,
      ours,
      reference,
      formatRatio(ratioOf(c)),
      trips,
      spreadText,
      goals
    ].map(cell)
  })
  return markdownTable(header, rows)
}

/** Judges `value` against a bound: `atLeast` for throughput-like goals, `atMost` for latency-like ones. */
export const goal = (
  text: string,
  value: number | null,
  bound: { atLeast: number } | { atMost: number }
): Goal => ({
  text,
  met:
    value === null || Number.isNaN(value)
      ? null
      : "atLeast" in bound
        ? value >= bound.atLeast
        : value <= bound.atMost
})
