import {
  DEFAULT_LIMITS,
  DEFAULT_REDACTION_POLICY,
  Engine,
  Id,
  Idempotency,
  type RunRecord,
  RunState,
  RunStore
} from "@baton/core"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { type Capabilities, type Harness, newKey, newPrincipal } from "../Harness.js"
import { readAll, withReason } from "./helpers.js"

export const createCases = (h: () => Harness, caps: Capabilities) =>
  describe("create", () => {
    it("stores the run, its first event and its idempotency record", async () => {
      const principal = newPrincipal()
      const key = newKey()
      const result = await h().run(
        Engine.createRun(
          principal,
          { input: { q: "hello", password: "hunter2" }, handler: "h1", metadata: { team: "a" } },
          { idempotencyKey: key }
        )
      )
      expect(result._tag).toBe("Created")
      if (result._tag !== "Created") return
      const run = result.run
      expect(run.status).toBe("queued")
      expect(run.last_seq).toBe(1)

      const raw = (await h().backdoor.rawRun(run.id)) as RunRecord
      expect(raw.id).toBe(run.id)
      expect(raw.customer_id).toBe(principal.customerId)
      expect(raw.status).toBe("queued")
      expect(raw.version).toBe(1)
      expect(raw.last_seq).toBe(1)
      expect(raw.input).toEqual({ q: "hello", password: "[REDACTED]" })
      expect(JSON.stringify(raw)).not.toContain("hunter2")

      const events = await h().backdoor.rawEvents(run.id)
      expect(events).toHaveLength(1)
      expect(events[0]).toMatchObject({
        run_id: run.id,
        seq: 1,
        type: "run.queued",
        payload: { redacted: false, value: { handler: "h1", metadata: { team: "a" } } }
      })

      const idem = await h().backdoor.rawIdempotency(principal.customerId, key)
      expect(idem).toMatchObject({ customer_id: principal.customerId, key, run_id: run.id })
      expect(idem?.fingerprint).toMatch(/^[0-9a-f]{64}$/)
    })

    it("replays the same key and body, and writes nothing", async () => {
      const principal = newPrincipal()
      const key = newKey()
      const body = { input: { a: 1, b: [1, 2] }, handler: "h" }
      const first = await h().run(Engine.createRun(principal, body, { idempotencyKey: key }))
      // Same body with its keys in another order: the same request.
      const again = await h().run(
        Engine.createRun(principal, { handler: "h", input: { b: [1, 2], a: 1 } }, { idempotencyKey: key })
      )
      expect(first._tag).toBe("Created")
      expect(again._tag).toBe("Replayed")
      if (first._tag !== "Created" || again._tag !== "Replayed") return
      expect(again.run.id).toBe(first.run.id)
      expect(await h().backdoor.rawEvents(first.run.id)).toHaveLength(1)
      const page = await h().run(Engine.listRuns(principal, {}))
      expect(page.data.map((r) => r.id)).toEqual([first.run.id])
    })

    it("reports a key reused with another body as data, and writes nothing", async () => {
      const principal = newPrincipal()
      const key = newKey()
      const first = await h().run(
        Engine.createRun(principal, { input: 1, handler: "h" }, { idempotencyKey: key })
      )
      const other = await h().run(
        Engine.createRun(principal, { input: 2, handler: "h" }, { idempotencyKey: key })
      )
      expect(first._tag).toBe("Created")
      expect(other).toMatchObject({ _tag: "KeyReused" })
      if (first._tag !== "Created" || other._tag !== "KeyReused") return
      expect(other.runId).toBe(first.run.id)
      const page = await h().run(Engine.listRuns(principal, {}))
      expect(page.data).toHaveLength(1)
    })

    it("scopes idempotency keys by customer", async () => {
      const a = newPrincipal()
      const b = newPrincipal()
      const key = newKey()
      const ra = await h().run(Engine.createRun(a, { input: 1, handler: "h" }, { idempotencyKey: key }))
      const rb = await h().run(Engine.createRun(b, { input: 1, handler: "h" }, { idempotencyKey: key }))
      expect(ra._tag).toBe("Created")
      expect(rb._tag).toBe("Created")
      if (ra._tag !== "Created" || rb._tag !== "Created") return
      expect(ra.run.id).not.toBe(rb.run.id)
    })

    it("lets an expired key create a new run", async () => {
      const principal = newPrincipal()
      const key = newKey()
      const now = Date.now()
      const fp = Idempotency.fingerprint({ k: 1 })
      const newRun = () =>
        RunState.create(
          {
            id: Id.makeRunId(now),
            customerId: principal.customerId,
            handler: "h",
            input: 1,
            metadata: {},
            limits: DEFAULT_LIMITS
          },
          { now, redaction: DEFAULT_REDACTION_POLICY }
        )
      const create = (run: ReturnType<typeof newRun>, expiresAt: number, at: number) =>
        h().run(
          Effect.flatMap(RunStore, (s) =>
            s.create({
              run: run.record,
              events: run.events,
              idempotency: {
                customer_id: principal.customerId,
                key,
                fingerprint: fp,
                run_id: run.record.id,
                expires_at: expiresAt
              },
              now: at
            })
          )
        )
      const first = newRun()
      expect(await create(first, now + 1000, now)).toMatchObject({ _tag: "Created" })
      const second = newRun()
      // Before expiry the key answers with the first run…
      expect(await create(second, now + 5000, now + 999)).toMatchObject({
        _tag: "Replayed",
        run: { id: first.record.id }
      })
      expect(await h().backdoor.rawRun(second.record.id)).toBeNull()
      // …after it, the same key creates a new run and owns it.
      expect(await create(second, now + 5000, now + 1000)).toMatchObject({
        _tag: "Created",
        run: { id: second.record.id }
      })
      expect(await h().backdoor.rawIdempotency(principal.customerId, key)).toMatchObject({
        run_id: second.record.id
      })
    })

    it.skipIf(!caps.concurrentWriters)(
      withReason(
        caps.concurrentWriters,
        "creates exactly one run for 100 concurrent creates with one key; the rest are Replayed",
        "concurrent writers"
      ),
      async () => {
        const principal = newPrincipal()
        const key = newKey()
        const body = { input: { same: true }, handler: "h" }
        const results = await Promise.all(
          Array.from({ length: 100 }, () =>
            h().run(Engine.createRun(principal, body, { idempotencyKey: key }))
          )
        )
        expect(results.filter((r) => r._tag === "Created")).toHaveLength(1)
        expect(results.filter((r) => r._tag === "Replayed")).toHaveLength(99)
        const ids = new Set(results.map((r) => (r._tag === "KeyReused" ? r.runId : r.run.id)))
        expect(ids.size).toBe(1)
        const page = await h().run(Engine.listRuns(principal, { limit: 100 }))
        expect(page.data).toHaveLength(1)
        const [id] = ids
        expect(await readAll(h(), id!)).toHaveLength(1)
      }
    )
  })
