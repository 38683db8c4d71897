/** Runs scenarios in order and hands back their outcomes; the CLI and the smoke test both call it. */

import { dispatchLatency } from "./scenarios/DispatchLatency.js"
import { eventAppend } from "./scenarios/event-append/EventAppend.js"
import { idempotentCreates } from "./scenarios/IdempotentCreates.js"
import { sseFanout } from "./scenarios/sse-fanout/SseFanout.js"
import { throughput } from "./scenarios/Throughput.js"
import { comparisonLine } from "./support/Report.js"
import type { Scenario, ScenarioContext, ScenarioOutcome } from "./support/Scenario.js"

/** In the order of priority for the Postgres work. */
export const SCENARIOS: ReadonlyArray<Scenario> = [
  throughput,
  dispatchLatency,
  idempotentCreates,
  eventAppend,
  sseFanout
]

export const scenarioById = (id: string): Scenario | undefined => SCENARIOS.find((s) => s.id === id)

export interface ScenarioRun {
  readonly scenario: Scenario
  readonly outcome: ScenarioOutcome
}

/** Runs each scenario, printing its comparison lines as it finishes. */
export const runScenarios = async (
  scenarios: ReadonlyArray<Scenario>,
  context: ScenarioContext,
  onDone: (run: ScenarioRun) => void = () => {}
): Promise<ReadonlyArray<ScenarioRun>> => {
  const runs: ScenarioRun[] = []
  for (const scenario of scenarios) {
    context.log(`\n== ${scenario.title}`)
    const outcome = await scenario.run(context)
    for (const comparison of outcome.comparisons) context.log(comparisonLine(comparison))
    const run = { scenario, outcome }
    runs.push(run)
    onDone(run)
  }
  return runs
}
