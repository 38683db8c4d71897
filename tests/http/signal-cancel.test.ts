/**
 * SPEC §4 `POST /runs/{id}/signal` and `POST /runs/{id}/cancel` against runs
 * a real worker executes: waiting, queued, running and finished.
 */
import { randomUUID } from "node:crypto"
import { describe, expect, it } from "vitest"
import {
  allEvents,
  createRun,
  expectError,
  getRun,
  request,
  waitForRun,
  waitForStatus
} from "./support/Client.js"
import { ANSWER_SCHEMA } from "./support/Handlers.js"
import { useHarness } from "./support/Harness.js"

const h = useHarness()

const signal = (runId: string, json: unknown, headers: Record<string, string> = {}) =>
  request(h, "POST", `/v1/runs/${runId}/signal`, { key: h.operatorKey, json, headers })
const cancel = (runId: string, json: unknown = {}) =>
  request(h, "POST", `/v1/runs/${runId}/cancel`, { key: h.operatorKey, json })

/** A `stream` run that waits for input once its step is done. */
const waitingRun = async () => {
  const run = await createRun(h, h.operatorKey, {
    input: { deltas: ["he", "llo"], wait: true },
    handler: "stream"
  })
  return waitForStatus(h, h.operatorKey, run.id, "awaiting_input")
}

/** A `gated` run held inside its step until the test opens its gate. */
const runningRun = async () => {
  const gate = `gate-${randomUUID()}`
  const run = await createRun(h, h.operatorKey, { input: { gate, before: 1 }, handler: "gated" })
  // Running, and its step has started (its progress is in the log).
  const seen = await waitForRun(
    h,
    h.operatorKey,
    run.id,
    (r) => r.status === "running" && r.last_seq >= 4,
    "running inside its step"
  )
  return { run: seen, gate }
}

describe("POST /v1/runs/{id}/signal", () => {
  it("with an idempotency-key: a retry is answered as the first signal, another signal on that key is 409", async () => {
    const waiting = await waitingRun()
    const key = `sig-${randomUUID()}`
    const first = await signal(waiting.id, { action: "approve" }, { "idempotency-key": key })
    expect(first.status).toBe(202)
    const done = await waitForStatus(h, h.operatorKey, waiting.id, "succeeded")
    const retried = await signal(waiting.id, { action: "approve" }, { "idempotency-key": key })
    expect(retried.status).toBe(202)
    expect(retried.body.status).toBe("succeeded")
    expectError(
      await signal(waiting.id, { action: "reject" }, { "idempotency-key": key }),
      409,
      "IDEMPOTENCY_KEY_REUSED"
    )
    expectError(
      await signal(waiting.id, { action: "approve" }, { "idempotency-key": "x".repeat(300) }),
      400,
      "IDEMPOTENCY_KEY_INVALID"
    )
    const events = await allEvents(h, h.operatorKey, waiting.id)
    expect(events.filter((e) => e.type === "run.signal_received")).toHaveLength(1)
    expect(events).toHaveLength(done.last_seq)
  })

  it("shows the wait on the run, and 202 resumes it to success", async () => {
    const waiting = await waitingRun()
    expect(waiting.awaiting_input).toMatchObject({
      prompt: "Continue?",
      actions: ["approve", "reject", "submit_input"],
      input_schema: ANSWER_SCHEMA
    })
    const res = await signal(waiting.id, { action: "approve", comment: "ship it" })
    expect(res.status).toBe(202)
    expect(res.body.id).toBe(waiting.id)
    expect(["queued", "running", "succeeded"]).toContain(res.body.status)
    expect(res.body.awaiting_input).toBeNull()
    const done = await waitForStatus(h, h.operatorKey, waiting.id, "succeeded")
    expect(done.output).toEqual({ text: "hello", decision: { action: "approve" } })
    const types = (await allEvents(h, h.operatorKey, waiting.id)).map((e) => e.type)
    expect(types).toContain("run.signal_received")
    expect(types.at(-1)).toBe("run.worker.succeeded")
  })

  it("accepts submit_input that matches the input_schema", async () => {
    const waiting = await waitingRun()
    const res = await signal(waiting.id, { action: "submit_input", input: { answer: "42" } })
    expect(res.status).toBe(202)
    const done = await waitForStatus(h, h.operatorKey, waiting.id, "succeeded")
    expect(done.output.decision).toEqual({ action: "submit_input", input: { answer: "42" } })
  })

  it("refuses submit_input that fails the input_schema with 422 SIGNAL_INPUT_INVALID and details; the run keeps waiting", async () => {
    const waiting = await waitingRun()
    for (const input of [{ answer: 42 }, {}, { answer: "x", extra: true }, "plain"]) {
      const res = await signal(waiting.id, { action: "submit_input", input })
      expectError(res, 422, "SIGNAL_INPUT_INVALID")
      expect(Array.isArray(res.body.details), JSON.stringify(input)).toBe(true)
      expect(res.body.details.length).toBeGreaterThan(0)
    }
    const res = await signal(waiting.id, { action: "submit_input", input: { answer: 42 } })
    expect(res.body.details.map((d: { path: string }) => d.path).join(" ")).toContain("answer")
    const still = await getRun(h, h.operatorKey, waiting.id)
    expect(still.status).toBe("awaiting_input")
    expect(still.last_seq).toBe(waiting.last_seq)
  })

  it("refuses a signal to a run that is not waiting with 409 RUN_NOT_AWAITING_INPUT (queued, running)", async () => {
    const queued = await createRun(h, h.operatorKey, { input: 1, handler: "parked" })
    expectError(await signal(queued.id, { action: "approve" }), 409, "RUN_NOT_AWAITING_INPUT")
    const { run, gate } = await runningRun()
    expectError(await signal(run.id, { action: "approve" }), 409, "RUN_NOT_AWAITING_INPUT")
    h.gates.open(gate)
    await waitForStatus(h, h.operatorKey, run.id, "succeeded")
  })

  it("refuses a signal to a finished run with 409 RUN_ALREADY_TERMINAL", async () => {
    const run = await createRun(h, h.operatorKey, { input: 1 })
    await waitForStatus(h, h.operatorKey, run.id, "succeeded")
    expectError(await signal(run.id, { action: "approve" }), 409, "RUN_ALREADY_TERMINAL")
    const cancelled = await createRun(h, h.operatorKey, { input: 1, handler: "parked" })
    expect((await cancel(cancelled.id)).status).toBe(202)
    expectError(await signal(cancelled.id, { action: "reject" }), 409, "RUN_ALREADY_TERMINAL")
  })

  it("refuses an ill-formed signal with 400 VALIDATION_FAILED, and unknown runs with 404", async () => {
    const waiting = await waitingRun()
    for (const body of [{}, { action: "nope" }, { action: "approve", comment: 5 }, [], null]) {
      const res = await signal(waiting.id, body)
      expectError(res, 400, "VALIDATION_FAILED")
      expect(Array.isArray(res.body.details)).toBe(true)
    }
    const malformed = await request(h, "POST", `/v1/runs/${waiting.id}/signal`, {
      key: h.operatorKey,
      raw: "{",
      headers: { "content-type": "application/json" }
    })
    expectError(malformed, 400, "MALFORMED_JSON")
    const plain = await request(h, "POST", `/v1/runs/${waiting.id}/signal`, {
      key: h.operatorKey,
      raw: JSON.stringify({ action: "approve" }),
      headers: { "content-type": "text/plain" }
    })
    expectError(plain, 415, "UNSUPPORTED_MEDIA_TYPE")
    expectError(await signal("run_01ARZ3NDEKTSV4RRFFQ69G5FAV", { action: "approve" }), 404, "RUN_NOT_FOUND")
    expectError(await signal("nope", { action: "approve" }), 404, "RUN_NOT_FOUND")
    expect((await getRun(h, h.operatorKey, waiting.id)).status).toBe("awaiting_input")
  })

  it("makes a retried signal with the same idempotency-key safe: 202 again, one signal recorded", async () => {
    const waiting = await waitingRun()
    const headers = { "idempotency-key": `sig-${randomUUID()}` }
    const first = await signal(waiting.id, { action: "approve" }, headers)
    expect(first.status).toBe(202)
    await waitForStatus(h, h.operatorKey, waiting.id, "succeeded")
    const retried = await signal(waiting.id, { action: "approve" }, headers)
    expect(retried.status).toBe(202)
    expect(retried.body.id).toBe(waiting.id)
    const received = (await allEvents(h, h.operatorKey, waiting.id)).filter(
      (e) => e.type === "run.signal_received"
    )
    expect(received).toHaveLength(1)
  })
})

describe("POST /v1/runs/{id}/cancel", () => {
  it("cancels a queued run at once: 202, status cancelled, with the reason", async () => {
    const run = await createRun(h, h.operatorKey, { input: 1, handler: "parked" })
    const res = await cancel(run.id, { reason: "changed my mind" })
    expect(res.status).toBe(202)
    expect(res.body.status).toBe("cancelled")
    expect(res.body.error).toMatchObject({ reason_code: "RUN_CANCELLED" })
    const events = await allEvents(h, h.operatorKey, run.id)
    expect(events.at(-1)).toMatchObject({
      type: "run.cancelled",
      payload: { value: { reason: "changed my mind" } }
    })
  })

  it("cancels a run awaiting input at once: 202, status cancelled", async () => {
    const waiting = await waitingRun()
    const res = await cancel(waiting.id)
    expect(res.status).toBe(202)
    expect(res.body.status).toBe("cancelled")
    expect(res.body.awaiting_input).toBeNull()
  })

  it("asks a running run's worker to stop: 202, then the run ends cancelled", async () => {
    const { run } = await runningRun()
    const res = await cancel(run.id, { reason: "stop" })
    expect(res.status).toBe(202)
    expect(["running", "cancelled"]).toContain(res.body.status)
    if (res.body.status === "running") expect(res.body.cancel_requested).toBe(true)
    const done = await waitForStatus(h, h.operatorKey, run.id, "cancelled")
    expect(done.finished_at).not.toBeNull()
    const types = (await allEvents(h, h.operatorKey, run.id)).map((e) => e.type)
    expect(types).toContain("run.cancel_requested")
    expect(types.at(-1)).toBe("run.cancelled")
  })

  it("accepts a cancel without a body", async () => {
    const run = await createRun(h, h.operatorKey, { input: 1, handler: "parked" })
    const res = await request(h, "POST", `/v1/runs/${run.id}/cancel`, { key: h.operatorKey })
    expect(res.status).toBe(202)
    expect(res.body.status).toBe("cancelled")
  })

  it("repeats the cancel of a cancelled run with 202 and changes nothing", async () => {
    const run = await createRun(h, h.operatorKey, { input: 1, handler: "parked" })
    const first = await cancel(run.id)
    const again = await cancel(run.id, { reason: "again" })
    expect(again.status).toBe(202)
    expect(again.body.status).toBe("cancelled")
    expect(again.body.last_seq).toBe(first.body.last_seq)
  })

  it("refuses to cancel a succeeded run with 409 RUN_ALREADY_TERMINAL", async () => {
    const run = await createRun(h, h.operatorKey, { input: 1 })
    await waitForStatus(h, h.operatorKey, run.id, "succeeded")
    expectError(await cancel(run.id), 409, "RUN_ALREADY_TERMINAL")
    expect((await getRun(h, h.operatorKey, run.id)).status).toBe("succeeded")
  })

  it("refuses an ill-formed cancel with 400 and an unknown run with 404", async () => {
    const run = await createRun(h, h.operatorKey, { input: 1, handler: "parked" })
    const bad = await cancel(run.id, { reason: 5 })
    expectError(bad, 400, "VALIDATION_FAILED")
    expect(Array.isArray(bad.body.details)).toBe(true)
    expectError(await cancel(run.id, { reason: "r".repeat(1001) }), 400, "VALIDATION_FAILED")
    expect((await getRun(h, h.operatorKey, run.id)).status).toBe("queued")
    expectError(await cancel("run_01ARZ3NDEKTSV4RRFFQ69G5FAV"), 404, "RUN_NOT_FOUND")
  })
})
