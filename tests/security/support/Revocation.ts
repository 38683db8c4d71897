/**
 * Revocation takes effect within 1 s on the server, whatever key cache it
 * keeps (`BATON_KEY_CACHE_MS`, default 500 ms): a key used a moment before
 * (so a cache would hold it) is refused from at most 1 s after its DELETE
 * answered, and stays refused.
 */
import { setTimeout as sleep } from "node:timers/promises"
import { expect, it } from "vitest"
import { call } from "../../cluster/support/Api.js"
import type { Register } from "./Suite.js"

const WITHIN_MS = 1_000

export const revocationPart: Register = (get, lane) => {
  it(`revocation on ${lane}: a revoked key is refused within ${WITHIN_MS} ms and stays refused`, async (ctx) => {
    const context = get()
    if (context === null) return ctx.skip(`${lane} not found (see the warning above)`)
    const { server, operatorKey } = context.server
    const minted = await call(server, operatorKey, "POST", "/api-keys", { json: { scopes: ["runs:read"] } })
    expect(minted.status).toBe(201)
    const key = minted.body.key as string
    // Used twice just before: a verified-key cache now holds it.
    for (let i = 0; i < 2; i++) expect((await call(server, key, "GET", "/runs?limit=1")).status).toBe(200)

    const revoked = await call(server, operatorKey, "DELETE", `/api-keys/${minted.body.key_id}`)
    expect(revoked.status).toBe(204)
    const since = Date.now()
    let firstRefusalMs: number | null = null
    while (Date.now() - since < WITHIN_MS) {
      const answer = await call(server, key, "GET", "/runs?limit=1")
      if (answer.status === 401) {
        firstRefusalMs ??= Date.now() - since
        expect(answer.body.reason_code).toBe("AUTH_KEY_INVALID")
      } else {
        // Still accepted: only a cache can do that, and only before it is refused once.
        expect(answer.status).toBe(200)
        expect(firstRefusalMs, "accepted again after a refusal").toBeNull()
      }
      await sleep(25)
    }
    console.log(`[security ${lane}] revoked key first refused after ${firstRefusalMs ?? "more than 1000"} ms`)
    for (let i = 0; i < 5; i++) expect((await call(server, key, "GET", "/runs?limit=1")).status).toBe(401)
    expect(firstRefusalMs).not.toBeNull()
  }, 30_000)
}
