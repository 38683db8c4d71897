/**
 * `pnpm bench [scenario…] [--size smoke|full|<fraction>] [--rounds N] [--no-write] [--only <contender name part>]`:
 * runs the scenarios (all by default), prints each comparison, and writes
 * their sections of bench/RESULTS.md.
 */
import { loadavg } from "node:os"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { runScenarios, SCENARIOS, scenarioById } from "./Bench.js"
import { renderSection, writeSection } from "./Results.js"
import { describeMachine, peerVersions } from "./support/Machine.js"
import { setContenderFilter } from "./support/Rounds.js"
import type { Scenario, Size } from "./support/Scenario.js"
import { locateServices } from "./support/Services.js"

const usage = `usage: pnpm bench [${SCENARIOS.map((s) => s.id).join("|")}…] [--size smoke|full|<fraction>] [--rounds N] [--no-write] [--only <contender name part>]`

const parseSize = (raw: string): Size => {
  if (raw === "smoke" || raw === "full") return raw
  const n = Number(raw)
  if (!(Number.isFinite(n) && n > 0))
    throw new Error(`--size is smoke, full or a positive fraction (got ${raw})`)
  return n
}

const main = async () => {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      size: { type: "string", default: "full" },
      rounds: { type: "string" },
      "no-write": { type: "boolean", default: false },
      only: { type: "string" },
      help: { type: "boolean", default: false }
    }
  })
  if (values.help) {
    console.log(usage)
    return
  }
  const size = parseSize(values.size)
  const rounds = Number(values.rounds ?? (size === "smoke" ? 1 : 3))
  if (!(Number.isInteger(rounds) && rounds >= 1)) throw new Error("--rounds is a positive integer")
  const scenarios: Scenario[] = []
  for (const id of positionals) {
    const scenario = scenarioById(id)
    if (scenario === undefined) throw new Error(`no scenario ${id}\n${usage}`)
    scenarios.push(scenario)
  }

  setContenderFilter(values.only ?? null)
  const services = await locateServices()
  const machine = await describeMachine(services.postgresUrl, services.redisUrl)
  console.log(
    `Postgres ${services.postgresUrl === null ? "not found" : machine.postgres}, Redis ${services.redisUrl === null ? "not found" : machine.redis}; ` +
      `${machine.cores} × ${machine.cpu}; load ${machine.loadAtStart.map((l) => l.toFixed(2)).join(" ")}`
  )
  const resultsPath = fileURLToPath(new URL("../RESULTS.md", import.meta.url))
  await runScenarios(
    scenarios.length === 0 ? SCENARIOS : scenarios,
    { services, size, rounds, log: (line) => console.log(line) },
    ({ scenario, outcome }) => {
      if (values["no-write"]) return
      machine.loadAtEnd = loadavg()
      writeSection(
        resultsPath,
        scenario.id,
        renderSection(scenario, outcome, { machine, size, rounds, versions: peerVersions() })
      )
      machine.loadAtStart = loadavg()
    }
  )
}

main().then(
  // Peers' pools and timers may linger after their stop(); the results are written, so end here.
  () => process.exit(0),
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : error)
    process.exit(1)
  }
)
