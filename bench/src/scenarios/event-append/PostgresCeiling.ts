/**
 * The Postgres ceiling of scenario 3: the adapter's append statement,
 * captured from Baton's round (text, parameter shapes, batch sizes), replayed
 * with no engine by one chain per run (each run's appends in order, as the
 * engine must) on a pg.Pool of the same size, one statement — one
 * transaction — per append.
 *
 * Why not pgbench: the statement compares the run's version and last seq and
 * takes the events' seqs as arrays, all of which change with every append; a
 * pgbench script cannot carry them without changing the statement.
 */
import pg from "pg"
import { startBaton } from "../../support/Baton.js"
import type { Contender } from "../../support/Rounds.js"
import { observePgStatements, type PgStatement, startCounting } from "../../support/RoundTrips.js"
import { adminQuery } from "../../support/Services.js"
import { type AppendRecorder, dealBatches, POOL_SIZE, type Workload } from "./Workload.js"

export interface PgAppendRecorder extends AppendRecorder {
  /** The last progress-only append seen (else the first append led by progress), and the schema it names. */
  readonly template: () => { readonly statement: PgStatement; readonly schema: string } | null
}

/** $6 of the append statement is the events' types: how many of them are step.progress (0: not an append). */
const progressEvents = (s: PgStatement): number =>
  /^\s*WITH run AS \(\s*UPDATE/.test(s.text) && Array.isArray(s.values[5])
    ? s.values[5].filter((t) => t === "step.progress").length
    : 0

export const pgAppendRecorder = (): PgAppendRecorder => {
  let seen: { statement: PgStatement; schema: string } | null = null
  let fallback: { statement: PgStatement; schema: string } | null = null
  let sizes: number[] = []
  return {
    observe: (schema) => {
      sizes = []
      return observePgStatements((s) => {
        const progress = progressEvents(s)
        if (progress === 0) return
        // Progress also rides with a step's end (one write): every progress event counts, but the
        // replayed statement is a progress-only one when there was any (its patch touches no status).
        sizes.push(progress)
        if (progress === (s.values[5] as unknown[]).length) seen = { statement: s, schema }
        else if (fallback === null && (s.values[5] as unknown[])[0] === "step.progress")
          fallback = { statement: s, schema }
      })
    },
    batchSizes: () => sizes,
    template: () => seen ?? fallback
  }
}

/** `column = $n` of the statement's SET list: which parameter carries which column. */
const setParameters = (text: string): ReadonlyMap<string, number> => {
  const setList = /\bSET\b([\s\S]*?)\bWHERE\b/.exec(text)?.[1] ?? ""
  return new Map([...setList.matchAll(/(\w+) = \$(\d+)/g)].map((m) => [m[1]!, Number(m[2]) - 1]))
}

export const postgresCeiling = (url: string, work: Workload, recorder: PgAppendRecorder): Contender => ({
  name: "ceiling: bare append loop",
  measure: async () => {
    const template = recorder.template()
    const batchSizes = recorder.batchSizes()
    if (template === null || batchSizes.length === 0)
      throw new Error("no append statement captured (the Baton round failed)")
    const baton = await startBaton({ backend: "postgres", url, poolSize: 1, handlers: { stream: () => {} } })
    const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE })
    try {
      for (let i = 0; i < work.runs; i++) await baton.engine.createRun({ handler: "stream", input: null })
      const runs = await adminQuery<{ id: string; version: number; last_seq: number }>(
        url,
        `SELECT id, version::int AS version, last_seq::int AS last_seq FROM "${baton.namespace}".runs`
      )
      const text = template.statement.text.replaceAll(`"${template.schema}"`, `"${baton.namespace}"`)
      const columns = setParameters(text)
      const payload = (template.statement.values[7] as unknown[])[0]
      const perRun = dealBatches(batchSizes, runs.length)
      const roundTrips = startCounting("pg")
      const startedAt = performance.now()
      await Promise.all(
        runs.map(async (run, i) => {
          let { version, last_seq: lastSeq } = run
          for (const size of perRun[i] ?? []) {
            const now = Date.now()
            // $1 id, $2 version, $3 lease (null: no lease check), $4 seq before, $5…$8 the events.
            const values = [...template.statement.values]
            values[0] = run.id
            values[1] = version
            values[2] = null
            values[3] = lastSeq
            values[4] = Array.from({ length: size }, (_, k) => lastSeq + k + 1)
            values[5] = Array.from({ length: size }, () => "step.progress")
            values[6] = Array.from({ length: size }, () => now)
            values[7] = Array.from({ length: size }, () => payload)
            for (const [column, index] of columns) {
              if (column === "last_seq") values[index] = lastSeq + size
              if (column === "updated_at") values[index] = now
            }
            const result = await pool.query({ name: `bench_${template.statement.name}`, text, values })
            if (result.rowCount === 0) throw new Error(`append to ${run.id} matched no row`)
            version++
            lastSeq += size
          }
        })
      )
      const elapsed = (performance.now() - startedAt) / 1000
      const events = batchSizes.reduce((a, b) => a + b, 0)
      return { value: events / elapsed, roundTripsPerRun: roundTrips() / work.runs }
    } finally {
      await pool.end()
      await baton.close()
    }
  }
})
