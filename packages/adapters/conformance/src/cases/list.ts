import { Engine, type Principal, type Run } from "@baton/core"
import { describe, expect, it } from "vitest"
import { type Harness, newHandler, newPrincipal } from "../Harness.js"
import { createRun, nextMillisecond } from "./helpers.js"

const pageAll = async (
  h: Harness,
  principal: Principal,
  query: Record<string, unknown>,
  between?: () => Promise<void>
) => {
  const ids: string[] = []
  let cursor: string | null = null
  for (let i = 0; i < 1000; i++) {
    const page: Engine.RunPage = await h.run(
      Engine.listRuns(principal, { ...query, ...(cursor === null ? {} : { cursor }) })
    )
    ids.push(...page.data.map((r: Run) => r.id))
    if (!page.has_more) return ids
    cursor = page.next_cursor
    await between?.()
  }
  throw new Error("pagination did not end")
}

export const listCases = (h: () => Harness) =>
  describe("list", () => {
    it("filters by status, handler, creation time and metadata", async () => {
      const p = newPrincipal()
      const h1 = newHandler()
      const h2 = newHandler()
      // Each run in its own millisecond, so creation-time bounds separate them.
      const a = await createRun(h(), p, h1, { metadata: { tier: "gold", n: 1, beta: true } })
      await nextMillisecond()
      const b = await createRun(h(), p, h2, { metadata: { tier: "gold", n: 2 } })
      await nextMillisecond()
      const c = await createRun(h(), p, h1, { metadata: { tier: "free" } })
      await h().run(Engine.cancelRun(p, c.id, {}))
      const ids = async (q: Record<string, unknown>) =>
        (await h().run(Engine.listRuns(p, q))).data.map((r) => r.id)
      expect(await ids({})).toEqual([c.id, b.id, a.id])
      expect(await ids({ handler: h1 })).toEqual([c.id, a.id])
      expect(await ids({ status: ["cancelled"] })).toEqual([c.id])
      expect(await ids({ status: ["queued", "cancelled"], handler: h1 })).toEqual([c.id, a.id])
      expect(await ids({ metadata: { tier: "gold" } })).toEqual([b.id, a.id])
      expect(await ids({ metadata: { tier: "gold", n: 2 } })).toEqual([b.id])
      expect(await ids({ metadata: { n: "2" } })).toEqual([])
      expect(await ids({ metadata: { beta: true } })).toEqual([a.id])
      expect(await ids({ created_after: b.created_at })).toEqual([c.id, b.id])
      expect(await ids({ created_before: b.created_at })).toEqual([a.id])
      expect(await ids({ created_after: "2999-01-01T00:00:00Z" })).toEqual([])
    })

    it("pages newest first, every run exactly once, while runs are being created", async () => {
      const p = newPrincipal()
      const handler = newHandler()
      const before: string[] = []
      for (let i = 0; i < 25; i++) before.push((await createRun(h(), p, handler)).id)
      let extra = 0
      const seen = await pageAll(h(), p, { limit: 4 }, async () => {
        await createRun(h(), p, handler)
        extra++
      })
      expect(new Set(seen).size).toBe(seen.length)
      for (const id of before) expect(seen.filter((s) => s === id)).toHaveLength(1)
      expect(extra).toBeGreaterThan(0)
      // Newest first: the pre-existing runs appear in reverse creation order.
      expect(seen.filter((id) => before.includes(id))).toEqual([...before].reverse())
    })

    it("refuses a forged cursor with a validation error", async () => {
      const result = await h().either(Engine.listRuns(newPrincipal(), { cursor: "not-a-cursor" }))
      expect(result).toMatchObject({ _tag: "Left", left: { reason_code: "VALIDATION_FAILED" } })
    })
  })
