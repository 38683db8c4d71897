import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { locateService } from "@baton/adapter-conformance"
import { pgliteStorage, postgresStorage } from "@baton/adapter-postgres"
import { type BatonEngine, createEngine, type StorageAdapter } from "@baton/core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { dropSchema, freshSchema, rawPool } from "./support.js"

/**
 * What a client sends comes back exactly: payloads are stored as `json`
 * (verbatim text), not `jsonb`, so U+0000, unpaired surrogates and key order
 * survive, and metadata (indexed as jsonb) refuses what it cannot hold.
 */
const runId = (created: Awaited<ReturnType<BatonEngine["createRun"]>>): string => {
  if (created._tag !== "Created") throw new Error(`expected a new run, got ${created._tag}`)
  return created.run.id
}

const fidelityCases = (storage: () => Promise<{ adapter: StorageAdapter; close: () => Promise<void> }>) => {
  let engine: BatonEngine
  let close: () => Promise<void>
  beforeAll(async () => {
    const opened = await storage()
    close = opened.close
    engine = createEngine({ storage: opened.adapter, config: { handlers: null } })
  })
  afterAll(async () => {
    await engine.dispose()
    await close()
  })

  const awkward = {
    zeta: "nul \u0000 inside",
    alpha: "lone \ud800 surrogate",
    mid: [1.5, "\u2028", { b: 1, a: 2 }]
  }

  it("returns input with U+0000, unpaired surrogates and its key order intact", async () => {
    const created = await engine.createRun({ input: awkward })
    const run = await engine.getRun(runId(created))
    expect(run.input).toEqual(awkward)
    expect(Object.keys(run.input as object)).toEqual(["zeta", "alpha", "mid"])
    expect(Object.keys((run.input as { mid: [number, string, object] }).mid[2])).toEqual(["b", "a"])
  })

  it("stores event payloads exactly (a cancel reason with U+0000)", async () => {
    const created = await engine.createRun({ input: {} })
    await engine.cancelRun(runId(created), { reason: "stop\u0000now" })
    const page = await engine.readEvents(runId(created))
    expect(page.data.at(-1)).toMatchObject({
      type: "run.cancelled",
      payload: { value: { reason: "stop\u0000now" } }
    })
  })

  it("refuses metadata it could not index, with a validation error, and stores nothing", async () => {
    await expect(engine.createRun({ input: {}, metadata: { team: "a\u0000b" } })).rejects.toMatchObject({
      reason_code: "VALIDATION_FAILED"
    })
    const page = await engine.listRuns({ metadata: { team: "a" } })
    expect(page.data).toEqual([])
  })
}

const postgres = await locateService("postgres")

describe("payload fidelity: pglite", () => {
  fidelityCases(async () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-pglite-"))
    return {
      adapter: pgliteStorage({ dataDir: join(dir, "data") }),
      close: async () => rmSync(dir, { recursive: true, force: true })
    }
  })
})

if (postgres === null) it.skip("payload fidelity: no Postgres found (set BATON_TEST_POSTGRES_URL)", () => {})
else
  describe("payload fidelity: postgres", () => {
    fidelityCases(async () => {
      const schema = freshSchema()
      const pool = rawPool(postgres.url)
      return {
        adapter: postgresStorage({ url: postgres.url, schema }),
        close: async () => {
          await dropSchema(pool, schema)
          await pool.end()
        }
      }
    })
  })
