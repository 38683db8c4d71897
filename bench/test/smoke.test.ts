/**
 * CI smoke run of every scenario at its smallest size, so the benchmarks
 * never rot. Asserts correctness only — every run finished, exactly one run
 * per key, a ratio line printed per comparison — never speed: CI machines
 * are too noisy for that.
 */
import { describe, expect, it } from "vitest"
import { runScenarios, SCENARIOS } from "../src/Bench.js"
import type { Comparison } from "../src/support/Report.js"
import { locateServices } from "../src/support/Services.js"

const services = await locateServices()
const required = new Set((process.env.BATON_TEST_REQUIRE ?? "").split(",").map((s) => s.trim()))
if (services.postgresUrl === null && required.has("postgres"))
  throw new Error("BATON_TEST_REQUIRE names postgres, but no Postgres was found.")

/** A comparison with both figures, or a Redis one waiting for its adapter. */
const measuredOrExcused = (c: Comparison): void => {
  if (c.backend === "redis" && c.ours === null) {
    expect(c.note, `${c.scenario}/${c.metric}`).toMatch(/adapter not available|no Redis/)
    return
  }
  expect(c.note ?? "", `${c.scenario}/${c.metric}`).not.toMatch(/failed|:\s*Error|Timed out/)
  expect(c.ours, `${c.scenario}/${c.backend}/${c.metric}: ours`).not.toBeNull()
  if (!c.referenceName.includes("not measured"))
    expect(c.reference, `${c.scenario}/${c.backend}/${c.metric}: ${c.referenceName}`).not.toBeNull()
}

describe.skipIf(services.postgresUrl === null)("bench smoke (set BATON_TEST_POSTGRES_URL)", () => {
  it("runs every scenario at smoke size and reports a ratio for each comparison", {
    timeout: 180_000
  }, async () => {
    const lines: string[] = []
    const runs = await runScenarios(SCENARIOS, {
      services,
      size: "smoke",
      rounds: 1,
      log: (line) => lines.push(line)
    })
    expect(runs.map((r) => r.scenario.id)).toEqual(SCENARIOS.map((s) => s.id))
    for (const { outcome } of runs) {
      expect(outcome.comparisons.length).toBeGreaterThan(0)
      for (const comparison of outcome.comparisons) measuredOrExcused(comparison)
    }
    const comparisons = runs.flatMap((r) => r.outcome.comparisons)
    expect(lines.filter((l) => l.includes("| ratio ")).length).toBe(comparisons.length)

    const perKey = comparisons.filter(
      (c) => c.scenario === "idempotency" && c.metric.startsWith("runs per key")
    )
    expect(perKey.length).toBeGreaterThan(0)
    for (const c of perKey.filter((c) => c.ours !== null)) {
      expect(c.ours).toBe(1)
      expect(c.goals?.[0]?.met).toBe(true)
    }
    // The fan-out delivered every event to every subscriber.
    for (const c of comparisons.filter((c) => c.scenario === "sse" && c.note !== undefined))
      expect(c.note).toMatch(
        /refused subscriptions 0 vs 0, dropped before the events 0 vs 0, undelivered frames 0 vs 0, lost connections 0 vs 0/
      )
  })
})
