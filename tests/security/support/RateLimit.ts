/**
 * Under a tiny per-key rate limit, a burst of requests meets 429
 * `RATE_LIMITED` with `retry-after`, in the error envelope. Rate limiting is
 * per process and storage-independent, so one lane runs it.
 */
import { expect, it } from "vitest"
import { LIMIT_SETTINGS, startSecurityServer } from "./Server.js"
import type { Register } from "./Suite.js"
import { judge, sendFetch } from "./Wire.js"

export const rateLimitPart: Register = (get, lane) => {
  it(`rate limiting on ${lane}: a burst past a tiny limit gets 429 RATE_LIMITED with retry-after`, async (ctx) => {
    const context = get()
    if (context === null) return ctx.skip(`${lane} not found (see the warning above)`)
    const limited = await startSecurityServer(context.store, {
      workers: 0,
      env: { [LIMIT_SETTINGS.rateLimitPerSecond]: "1", [LIMIT_SETTINGS.rateLimitBurst]: "2" }
    })
    try {
      const answers = await Promise.all(
        Array.from({ length: 12 }, () =>
          sendFetch(limited.server.url, {
            method: "GET",
            path: "/v1/runs?limit=1",
            headers: { authorization: `Bearer ${limited.operatorKey}` }
          })
        )
      )
      const refused = answers.filter((a) => a.status === 429)
      expect(refused.length, `statuses ${answers.map((a) => a.status).join(",")}`).toBeGreaterThan(0)
      expect(answers.filter((a) => a.status === 200).length).toBeGreaterThan(0)
      for (const answer of refused) {
        expect(judge(answer, "GET", []).ok).toBe(true)
        expect(JSON.parse(answer.body).reason_code).toBe("RATE_LIMITED")
        expect(Number(answer.headers.get("retry-after"))).toBeGreaterThan(0)
      }
    } finally {
      await limited.cluster.close()
      expect(limited.cluster.leftovers()).toEqual([])
    }
  }, 90_000)
}
