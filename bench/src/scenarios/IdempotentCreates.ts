/**
 * Scenario 5, idempotent creates: 16 concurrent clients create runs with
 * colliding Idempotency-Keys (every key is sent by all 16 clients at about
 * the same time). Measured: creates/s, and that each key got exactly one run
 * (every answer for a key names the same run, and the store holds one run
 * per key). The reference is the same 16 clients creating without keys: the
 * ratio is what idempotency costs.
 */
import { randomUUID } from "node:crypto"
import { type Backend, type BatonInstance, loadRedisAdapter, startBaton } from "../support/Baton.js"
import type { Comparison } from "../support/Report.js"
import { type Contender, interleave } from "../support/Rounds.js"
import { startCounting } from "../support/RoundTrips.js"
import { type Scenario, type ScenarioContext, sized, unavailable } from "../support/Scenario.js"
import { adminQuery } from "../support/Services.js"

const CLIENTS = 16

const handlers = { noop: () => {} }

/** Runs the store holds: from Postgres directly; for other stores, from the engine's list. */
const storedRunCount = async (baton: BatonInstance, url: string): Promise<number> => {
  if (baton.backend === "postgres") {
    const [row] = await adminQuery<{ n: number }>(
      url,
      `SELECT count(*)::int AS n FROM "${baton.namespace}".runs`
    )
    return row?.n ?? 0
  }
  let count = 0
  let cursor: string | null = null
  do {
    const page = await baton.engine.listRuns({ limit: 100, ...(cursor === null ? {} : { cursor }) })
    count += page.data.length
    cursor = page.next_cursor
  } while (cursor !== null)
  return count
}

/** What the keyed rounds found: the most runs any one key got (must be 1), over every round. */
interface KeyCheck {
  maxRunsPerKey: number
  storedMismatch: string | null
}

const keyedContender = (backend: Backend, url: string, keys: number, check: KeyCheck): Contender => ({
  name: `baton (${backend}, colliding keys)`,
  measure: async () => {
    const baton = await startBaton({ backend, url, handlers })
    try {
      const keyNames = Array.from({ length: keys }, () => randomUUID())
      const runsByKey = new Map<string, Set<string>>(keyNames.map((k) => [k, new Set()]))
      const roundTrips = startCounting(backend === "postgres" ? "pg" : "redis")
      const startedAt = performance.now()
      // Every client walks the same keys in the same order, so each key is sent 16 times at once.
      await Promise.all(
        Array.from({ length: CLIENTS }, async () => {
          for (const key of keyNames) {
            const result = await baton.engine.createRun(
              { handler: "noop", input: null },
              { idempotencyKey: key }
            )
            if (result._tag === "KeyReused")
              throw new Error(`key ${key} reported as reused with another body`)
            runsByKey.get(key)!.add(result.run.id)
          }
        })
      )
      const elapsed = (performance.now() - startedAt) / 1000
      const trips = roundTrips()
      check.maxRunsPerKey = Math.max(check.maxRunsPerKey, ...[...runsByKey.values()].map((ids) => ids.size))
      const stored = await storedRunCount(baton, url)
      if (stored !== keys) check.storedMismatch = `${stored} runs stored for ${keys} keys`
      return { value: (CLIENTS * keys) / elapsed, roundTripsPerRun: trips / (CLIENTS * keys) }
    } finally {
      await baton.close()
    }
  }
})

const unkeyedContender = (backend: Backend, url: string, keys: number): Contender => ({
  name: `baton (${backend}, no keys)`,
  measure: async () => {
    const baton = await startBaton({ backend, url, handlers })
    try {
      const roundTrips = startCounting(backend === "postgres" ? "pg" : "redis")
      const startedAt = performance.now()
      await Promise.all(
        Array.from({ length: CLIENTS }, async () => {
          for (let i = 0; i < keys; i++) await baton.engine.createRun({ handler: "noop", input: null })
        })
      )
      const elapsed = (performance.now() - startedAt) / 1000
      return { value: (CLIENTS * keys) / elapsed, roundTripsPerRun: roundTrips() / (CLIENTS * keys) }
    } finally {
      await baton.close()
    }
  }
})

const BASE = { scenario: "idempotency", direction: "higher-is-better" } as const

const runBackend = async (
  backend: Backend,
  url: string,
  keys: number,
  rounds: number,
  log: (line: string) => void
): Promise<ReadonlyArray<Comparison>> => {
  const check: KeyCheck = { maxRunsPerKey: 0, storedMismatch: null }
  const [keyed, unkeyed] = await interleave(
    rounds,
    [keyedContender(backend, url, keys, check), unkeyedContender(backend, url, keys)],
    log
  )
  const failures = [keyed!, unkeyed!].flatMap((c) => (c.failure === null ? [] : [`${c.name}: ${c.failure}`]))
  return [
    {
      ...BASE,
      backend,
      metric: `creates/s, ${CLIENTS} clients, colliding keys`,
      unit: "creates/s",
      ours: keyed!.failure === null ? keyed!.value : null,
      referenceName: "the same creates without keys",
      reference: unkeyed!.failure === null ? unkeyed!.value : null,
      roundTrips: { ours: keyed!.roundTripsPerRun, reference: unkeyed!.roundTripsPerRun },
      spread: keyed!.spread,
      ...(failures.length === 0 ? {} : { note: failures.join("; ") })
    },
    {
      ...BASE,
      direction: "lower-is-better",
      backend,
      metric: "runs per key (most any key got)",
      unit: "runs",
      ours: keyed!.failure === null ? check.maxRunsPerKey : null,
      referenceName: "required",
      reference: 1,
      goals: [
        {
          text: "exactly one run per key",
          met: keyed!.failure === null ? check.maxRunsPerKey === 1 && check.storedMismatch === null : null
        }
      ],
      ...(check.storedMismatch === null ? {} : { note: check.storedMismatch })
    }
  ]
}

export const idempotentCreates: Scenario = {
  id: "idempotency",
  title: "5. Idempotent creates: 16 clients, colliding keys",
  run: async ({ services, size, rounds, log }: ScenarioContext) => {
    const keys = sized(size, 1000, 10)
    const comparisons: Comparison[] = []
    const notes = [
      `${keys} keys per round, each sent by all ${CLIENTS} clients (${CLIENTS * keys} creates), in-process ` +
        "`engine.createRun` calls, no worker running. Round trips are per create call."
    ]
    const base = { ...BASE, metric: "creates/s", unit: "creates/s", referenceName: "no keys" }
    if (services.postgresUrl === null)
      comparisons.push(unavailable({ ...base, backend: "postgres" }, "no Postgres"))
    else {
      log(`idempotency/postgres: ${keys} keys × ${CLIENTS} clients, ${rounds} rounds`)
      comparisons.push(...(await runBackend("postgres", services.postgresUrl, keys, rounds, log)))
    }
    const redisAdapter = await loadRedisAdapter()
    if (services.redisUrl === null) comparisons.push(unavailable({ ...base, backend: "redis" }, "no Redis"))
    else if (typeof redisAdapter === "string")
      comparisons.push(unavailable({ ...base, backend: "redis" }, `adapter not available (${redisAdapter})`))
    else {
      log(`idempotency/redis: ${keys} keys × ${CLIENTS} clients, ${rounds} rounds`)
      comparisons.push(...(await runBackend("redis", services.redisUrl, keys, rounds, log)))
    }
    return { comparisons, notes }
  }
}
