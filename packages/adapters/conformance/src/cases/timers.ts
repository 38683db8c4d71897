import { Engine, RunState, RunStore } from "@baton/core"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { at, type Harness, newHandler, newPrincipal } from "../Harness.js"
import { apply, claim, createRun, getRecord, readAll, runningRun } from "./helpers.js"

const dueIds = async (h: Harness, now: number) =>
  (await h.run(Effect.flatMap(RunStore, (s) => s.dueTimers(now, 10_000)))).map((r) => r.id)

export const timerCases = (h: () => Harness) =>
  describe("timers and sweeps", () => {
    it("reports an input timeout as due once it passed; a sweep then ends the run LIMIT_INPUT_TIMEOUT", async () => {
      const run = await runningRun(h(), newPrincipal(), newHandler())
      const token = run.lease_token!
      const { run: waiting } = await apply(
        h(),
        run.id,
        RunState.RunCommand.AwaitInput({
          leaseToken: token,
          prompt: "ok?",
          actions: ["approve"],
          timeoutMs: 60_000
        }),
        token
      )
      const expiresAt = waiting.awaiting_input!.expires_at!
      expect(waiting.timer_at).toBe(expiresAt)
      expect((await getRecord(h(), run.id)).timer_at).toBe(expiresAt)
      expect(await dueIds(h(), expiresAt - 1)).not.toContain(run.id)
      expect(await dueIds(h(), expiresAt)).toContain(run.id)
      expect(await h().run(at(expiresAt - 1, Engine.sweep()))).toBeGreaterThanOrEqual(0)
      expect((await getRecord(h(), run.id)).status).toBe("awaiting_input")
      await h().run(at(expiresAt, Engine.sweep(10_000)))
      const ended = await getRecord(h(), run.id)
      expect(ended.status).toBe("limit_exceeded")
      expect(ended.error?.reason_code).toBe("LIMIT_INPUT_TIMEOUT")
      expect(ended.timer_at).toBeNull()
      expect(await dueIds(h(), expiresAt + 1_000_000)).not.toContain(run.id)
      const events = await readAll(h(), run.id)
      expect(events.at(-1)).toMatchObject({
        type: "run.limit_exceeded",
        payload: { value: { limit: "input_timeout" } }
      })
    })

    it("ends a running run at its max_duration deadline", async () => {
      const principal = newPrincipal()
      const handler = newHandler()
      const run = await createRun(h(), principal, handler, { limits: { max_duration_ms: 5000 } })
      const [claimed] = await claim(h(), handler, { leaseMs: 600_000 })
      const deadline = claimed!.deadline_at!
      expect(claimed!.timer_at).toBe(deadline)
      expect(await dueIds(h(), deadline - 1)).not.toContain(run.id)
      expect(await dueIds(h(), deadline)).toContain(run.id)
      await h().run(at(deadline, Engine.sweep(10_000)))
      const ended = await getRecord(h(), run.id)
      expect(ended.status).toBe("limit_exceeded")
      expect(ended.error?.reason_code).toBe("LIMIT_MAX_DURATION")
      expect(ended.lease_token).toBeNull()
    })

    it("requeues a run whose lease expired when a sweep passes", async () => {
      const handler = newHandler()
      const run = await createRun(h(), newPrincipal(), handler)
      const [claimed] = await claim(h(), handler, { leaseMs: 1000 })
      const expiry = claimed!.lease_expires_at!
      expect(await dueIds(h(), expiry - 1)).not.toContain(run.id)
      expect(await dueIds(h(), expiry)).toContain(run.id)
      await h().run(at(expiry, Engine.sweep(10_000)))
      const after = await getRecord(h(), run.id)
      expect(after.status).toBe("queued")
      expect(after.lease_token).toBeNull()
      expect(after.usage.attempts).toBe(2)
      expect((await readAll(h(), run.id)).at(-1)).toMatchObject({
        type: "run.requeued",
        payload: { value: { reason: "lease_expired", attempt: 2 } }
      })
    })
  })
