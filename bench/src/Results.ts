/**
 * bench/RESULTS.md: one section per scenario, each with the date, machine,
 * load and versions of the run that measured it. Running one scenario
 * replaces only its own section, so the file always holds the latest figure
 * of every scenario.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import type { MachineInfo } from "./support/Machine.js"
import { comparisonTable } from "./support/Report.js"
import type { Scenario, ScenarioOutcome, Size } from "./support/Scenario.js"

const HEADER = `# Baton benchmark results

Written by \`pnpm bench\` (see bench/README.md): each section is the latest run
of one scenario. Ratios are Baton / reference; for latencies and memory a ratio
above 1 means Baton is slower or larger. Figures are medians of interleaved
rounds (Baton, peer, Baton, peer…); "spread" is (max - min) / median of
Baton's rounds, a measure of how noisy the machine was.
`

const marker = (id: string) => ({ start: `<!-- scenario:${id} -->`, end: `<!-- /scenario:${id} -->` })

const formatLoad = (load: ReadonlyArray<number>) => load.map((l) => l.toFixed(2)).join(", ")

export const renderSection = (
  scenario: Scenario,
  outcome: ScenarioOutcome,
  run: { machine: MachineInfo; size: Size; rounds: number; versions: Readonly<Record<string, string>> }
): string => {
  const { machine } = run
  const versions = Object.entries(run.versions)
    .map(([name, version]) => `${name} ${version}`)
    .join(", ")
  const { start, end } = marker(scenario.id)
  return [
    start,
    `## ${scenario.title}`,
    "",
    `${new Date().toISOString()} · size \`${run.size}\` · ${run.rounds} round(s) · ` +
      `${machine.cores} × ${machine.cpu}, ${machine.memoryGiB} GiB · Node ${machine.node} · ` +
      `Postgres ${machine.postgres ?? "n/a"} · Redis ${machine.redis ?? "n/a"} · ${versions} · ` +
      `load average (1/5/15 min) ${formatLoad(machine.loadAtStart)} at start, ${formatLoad(machine.loadAtEnd)} at end`,
    "",
    comparisonTable(outcome.comparisons),
    "",
    ...outcome.notes.map((n) => `- ${n}`),
    end
  ].join("\n")
}

/** Replaces (or appends) the scenario's section of the results file. */
export const writeSection = (path: string, id: string, section: string): void => {
  const current = existsSync(path) ? readFileSync(path, "utf8") : HEADER
  const { start, end } = marker(id)
  const from = current.indexOf(start)
  const to = current.indexOf(end)
  const next =
    from >= 0 && to > from
      ? current.slice(0, from) + section + current.slice(to + end.length)
      : `${current.trimEnd()}\n\n${section}\n`
  writeFileSync(path, next)
}
