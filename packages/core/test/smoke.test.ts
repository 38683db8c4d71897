import { memoryStorage } from "@baton/adapter-memory"
import { createEngine } from "@baton/core"
import { describe, expect, it } from "vitest"

describe("engine smoke", () => {
  it("creates, reads, cancels and streams a run", async () => {
    const engine = createEngine({ storage: memoryStorage(), handlers: { default: () => null } })
    const created = await engine.createRun({ input: { q: "hi", password: "p" } }, { idempotencyKey: "k1" })
    expect(created._tag).toBe("Created")
    if (created._tag !== "Created") return
    expect(created.run.input).toEqual({ q: "hi", password: "[REDACTED]" })
    const again = await engine.createRun({ input: { q: "hi", password: "p" } }, { idempotencyKey: "k1" })
    expect(again._tag).toBe("Replayed")
    const cancelled = await engine.cancelRun(created.run.id, { reason: "no" })
    expect(cancelled.status).toBe("cancelled")
    const seen = []
    for await (const e of await engine.subscribe(created.run.id)) seen.push(e.seq)
    expect(seen).toEqual([1, 2])
    await engine.dispose()
  })
})
