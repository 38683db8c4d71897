/**
 * Tenancy: customer B, holding every scope, tries every route with customer
 * A's run ids and key ids and gets exactly what an id that never existed gets
 * (404, same code and message), lists only its own run (made with A's
 * metadata and handler, so every filter matches it) and its own key, never
 * A's, and leaves A's runs and keys as they were. B with an under-scoped key gets 403 for A's ids and
 * for unknown ids alike, so a 403 reveals no existence either.
 */
import { randomBytes, randomUUID } from "node:crypto"
import { expect, it } from "vitest"
import { type Answer, call, createRun, snapshot } from "../../cluster/support/Api.js"
import type { ServerProcess } from "../../cluster/support/Cluster.js"
import { waitFor } from "../../cluster/support/Wait.js"
import type { Register } from "./Suite.js"

const ALL_SCOPES = ["runs:read", "runs:write", "runs:signal", "keys:admin"]

/** An answer without what differs between any two requests (its request id). */
const comparable = (answer: Answer) => {
  const { request_id: _, ...body } = answer.body ?? {}
  return { status: answer.status, body }
}

const mint = async (
  server: ServerProcess,
  key: string,
  body: object
): Promise<{ keyId: string; key: string }> => {
  const answer = await call(server, key, "POST", "/api-keys", { json: body })
  expect(answer.status, JSON.stringify(answer.body)).toBe(201)
  return { keyId: answer.body.key_id, key: answer.body.key }
}

const statusOf = async (server: ServerProcess, key: string, runId: string): Promise<string> =>
  (await call(server, key, "GET", `/runs/${runId}`)).body.status

export const crossTenantPart: Register = (get, lane) => {
  it(`cross-tenant on ${lane}: customer B gets 404 and none of A's data on every route; under-scoped B gets 403 alike`, async (ctx) => {
    const context = get()
    if (context === null) return ctx.skip(`${lane} not found (see the warning above)`)
    const { server, operatorKey } = context.server
    const suffix = randomBytes(4).toString("hex")
    const a = await mint(server, operatorKey, { customer_id: `tenant-a-${suffix}`, scopes: ALL_SCOPES })
    const b = await mint(server, operatorKey, { customer_id: `tenant-b-${suffix}`, scopes: ALL_SCOPES })

    // A's world: a terminal run, a run awaiting input, a queued-or-running one, and a second key.
    const metadata = { tenant: "a", shared: `tag-${suffix}` }
    const done = await createRun(server, a.key, { handler: "work", input: { steps: 1, deltas: 0 }, metadata })
    const waiting = await createRun(server, a.key, { handler: "approval", input: {}, metadata })
    const sharedIdempotencyKey = randomUUID()
    const idem = await call(server, a.key, "POST", "/runs", {
      json: { handler: "work", input: { steps: 1, deltas: 0 }, metadata },
      headers: { "idempotency-key": sharedIdempotencyKey }
    })
    expect(idem.status).toBe(201)
    const a2 = await mint(server, a.key, { name: "a's second", scopes: ["runs:read"] })
    await waitFor("A's runs to settle", async () => {
      const statuses = await Promise.all(
        [done.id, waiting.id, idem.body.id].map((id) => statusOf(server, a.key, id))
      )
      return statuses[0] === "succeeded" && statuses[1] === "awaiting_input" && statuses[2] === "succeeded"
    })
    const runIds = [done.id, waiting.id, idem.body.id] as string[]
    const before = await Promise.all(runIds.map((id) => snapshot(server, a.key, id)))
    const keysBefore = (await call(server, a.key, "GET", "/api-keys")).body.data

    // What a run id that never existed gets, route by route: B must get exactly that for A's ids.
    const runRoutes: ReadonlyArray<[string, (id: string) => string, object | undefined]> = [
      ["GET", (id) => `/runs/${id}`, undefined],
      ["GET", (id) => `/runs/${id}/events`, undefined],
      ["GET", (id) => `/runs/${id}/events?after_seq=0&limit=100`, undefined],
      ["GET", (id) => `/runs/${id}/events/stream`, undefined],
      ["GET", (id) => `/runs/${id}/events/stream?after_seq=0`, undefined],
      ["POST", (id) => `/runs/${id}/signal`, { action: "approve", comment: "from b" }],
      ["POST", (id) => `/runs/${id}/signal`, { action: "reject" }],
      ["POST", (id) => `/runs/${id}/cancel`, { reason: "from b" }],
      ["POST", (id) => `/runs/${id}/cancel`, {}]
    ]
    const neverExisted = "run_00000000000000000000000000"
    const tries = async (key: string, id: string) =>
      Promise.all(
        runRoutes.map(([method, path, json]) =>
          call(server, key, method, path(id), {
            ...(json === undefined ? {} : { json }),
            headers: { "idempotency-key": randomUUID(), accept: "application/json, text/event-stream" }
          })
        )
      )
    const unknown = (await tries(b.key, neverExisted)).map(comparable)
    for (const answer of unknown) expect(answer.status).toBe(404)
    for (const id of runIds) {
      const answers = await tries(b.key, id)
      answers.forEach((answer, i) => {
        const what = `${runRoutes[i]![0]} ${runRoutes[i]![1](id)} as B`
        expect(comparable(answer), what).toEqual(unknown[i])
        expect(JSON.stringify(answer.body), what).not.toContain(suffix)
      })
    }

    // Lists: B's own run, with A's metadata and handler and waiting like A's, and nothing of A's, whatever
    // the filter (checked against a list that matches something, so an empty answer cannot pass).
    const bRun = await createRun(server, b.key, { handler: "approval", input: {}, metadata })
    await waitFor(
      "B's run to wait for input",
      async () => (await statusOf(server, b.key, bRun.id)) === "awaiting_input"
    )
    const lists = [
      `/runs?metadata[shared]=tag-${suffix}`,
      "/runs?metadata[tenant]=a",
      "/runs?handler=approval",
      "/runs?status=awaiting_input,succeeded",
      "/runs?limit=100",
      `/runs?created_after=${encodeURIComponent(new Date(Date.now() - 3_600_000).toISOString())}`
    ]
    for (const path of lists) {
      const answer = await call(server, b.key, "GET", path)
      expect(answer.status, path).toBe(200)
      const ids = (answer.body.data as Array<{ id: string }>).map((r) => r.id)
      for (const id of runIds) expect(ids, path).not.toContain(id)
      expect(ids, path).toEqual([bRun.id])
    }
    // B's key list: B's key only (the operator minted it), none of A's.
    const bKeys = await call(server, b.key, "GET", "/api-keys")
    expect(bKeys.status).toBe(200)
    expect(JSON.stringify(bKeys.body)).not.toContain(a.keyId)
    expect(JSON.stringify(bKeys.body)).not.toContain(a2.keyId)
    expect((bKeys.body.data as Array<{ key_id: string }>).map((k) => k.key_id)).toEqual([b.keyId])

    // Keys: revoking A's keys is a 404 like an unknown key's.
    const unknownKey = comparable(
      await call(server, b.key, "DELETE", "/api-keys/key_000000000000000000000000")
    )
    expect(unknownKey.status).toBe(404)
    for (const keyId of [a.keyId, a2.keyId])
      expect(
        comparable(await call(server, b.key, "DELETE", `/api-keys/${keyId}`)),
        `DELETE ${keyId} as B`
      ).toEqual(unknownKey)

    // B reusing A's idempotency key gets a run of its own.
    const bIdem = await call(server, b.key, "POST", "/runs", {
      json: { handler: "work", input: { steps: 1, deltas: 0 }, metadata },
      headers: { "idempotency-key": sharedIdempotencyKey }
    })
    expect(bIdem.status).toBe(201)
    expect(bIdem.body.id).not.toBe(idem.body.id)

    // The operator is a customer too: A's runs are not its runs.
    expect(comparable(await call(server, operatorKey, "GET", `/runs/${done.id}`))).toEqual(
      comparable(await call(server, operatorKey, "GET", `/runs/${neverExisted}`))
    )

    // Under-scoped B: 403 for A's ids and unknown ids alike.
    const bRead = await mint(server, b.key, { scopes: ["runs:read"] })
    const bWrite = await mint(server, b.key, { scopes: ["runs:write"] })
    const scoped: ReadonlyArray<[string, string, string, (id: string) => string, object | undefined]> = [
      ["runs:read", bRead.key, "POST", (id) => `/runs/${id}/signal`, { action: "approve" }],
      ["runs:read", bRead.key, "POST", (id) => `/runs/${id}/cancel`, {}],
      ["runs:read", bRead.key, "DELETE", (id) => `/api-keys/${id}`, undefined],
      ["runs:write", bWrite.key, "GET", (id) => `/runs/${id}`, undefined],
      ["runs:write", bWrite.key, "GET", (id) => `/runs/${id}/events`, undefined],
      ["runs:write", bWrite.key, "GET", (id) => `/runs/${id}/events/stream`, undefined],
      ["runs:write", bWrite.key, "POST", (id) => `/runs/${id}/signal`, { action: "approve" }]
    ]
    for (const [scope, key, method, path, json] of scoped) {
      const idsToTry =
        method === "DELETE" ? [a.keyId, "key_000000000000000000000000"] : [waiting.id, neverExisted]
      const answers = await Promise.all(
        idsToTry.map((id) => call(server, key, method, path(id), json === undefined ? {} : { json }))
      )
      const what = `${method} ${path("…")} with only ${scope}`
      expect(answers[0]!.status, what).toBe(403)
      expect(answers[0]!.body.reason_code, what).toBe("AUTH_SCOPE_DENIED")
      expect(comparable(answers[0]!), what).toEqual(comparable(answers[1]!))
    }

    // A's world is unchanged: same runs, same logs, same keys, still working.
    const after = await Promise.all(runIds.map((id) => snapshot(server, a.key, id)))
    expect(after).toEqual(before)
    expect((await call(server, a.key, "GET", "/api-keys")).body.data).toEqual(keysBefore)
    expect((await call(server, a2.key, "GET", `/runs/${done.id}`)).status).toBe(200)
  }, 90_000)
}
