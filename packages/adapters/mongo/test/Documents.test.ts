/** The document mapping: a run survives encode/decode, patches set only what they name, claim_at follows status. */
import { DEFAULT_LIMITS, DEFAULT_REDACTION_POLICY, Id, RunState } from "@baton/core"
import { describe, expect, it } from "vitest"
import {
  claimAtOf,
  decodeRun,
  encodePatch,
  encodeReplacement,
  encodeRun,
  metadataTerm
} from "../src/Documents.js"

const run = RunState.create(
  {
    id: Id.makeRunId(1_000),
    customerId: "c",
    handler: "h",
    input: { q: "x" },
    metadata: { team: "a", n: 1 },
    limits: DEFAULT_LIMITS
  },
  { now: 1_000, redaction: DEFAULT_REDACTION_POLICY }
).record

describe("run documents", () => {
  it("round-trips a run, with its id as _id and user data as JSON text", () => {
    const doc = encodeRun(run)
    expect(doc._id).toBe(run.id)
    expect(doc.input_json).toBe('{"q":"x"}')
    expect(doc.metadata_terms).toEqual([metadataTerm("team", "a"), metadataTerm("n", 1)])
    expect(doc.claim_at).toBe(run.available_at)
    expect(decodeRun(doc)).toEqual(run)
  })

  it("sets only the patch's keys, null included, never identity fields or version", () => {
    const set = encodePatch({ worker_id: null, timer_at: 42, output: { ok: true } })
    expect(set).toEqual({ worker_id: null, timer_at: 42, output_json: '{"ok":true}' })
    expect(encodePatch({ ...({ id: "x", version: 9 } as object) })).toEqual({})
    const replacement = encodeReplacement({ ...run, status: "running", lease_expires_at: 5_000 })
    expect(replacement).not.toHaveProperty("_id")
    expect(replacement).not.toHaveProperty("input_json")
    expect(replacement).toMatchObject({ status: "running", claim_at: 5_000, version: run.version })
  })

  it("orders claims by available_at while queued and by lease expiry while running; never otherwise", () => {
    const base = { available_at: 10, lease_expires_at: 20 }
    expect(claimAtOf({ ...base, status: "queued" })).toBe(10)
    expect(claimAtOf({ ...base, status: "running" })).toBe(20)
    expect(claimAtOf({ ...base, status: "awaiting_input" })).toBeNull()
    expect(claimAtOf({ ...base, status: "succeeded" })).toBeNull()
  })

  it("keeps metadata terms type-sensitive", () => {
    expect(new Set([metadataTerm("k", 1), metadataTerm("k", "1"), metadataTerm("k", true)]).size).toBe(3)
  })
})
