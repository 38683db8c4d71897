import { Engine, RunState } from "@baton/core"
import { describe, expect, it } from "vitest"
import { type Harness, newHandler, newPrincipal } from "../Harness.js"
import { apply, createRun, runningRun } from "./helpers.js"

export const tenancyCases = (h: () => Harness) =>
  describe("tenancy", () => {
    it("never shows one customer another customer's runs or events", async () => {
      const a = newPrincipal()
      const b = newPrincipal()
      const handler = newHandler()
      const run = await createRun(h(), a, handler, { metadata: { owner: "a" } })
      const notFound = { _tag: "Left", left: { reason_code: "RUN_NOT_FOUND" } }
      expect(await h().either(Engine.getRun(b, run.id))).toMatchObject(notFound)
      expect(await h().either(Engine.readEvents(b, run.id))).toMatchObject(notFound)
      expect(await h().either(Engine.subscribe(b, run.id))).toMatchObject(notFound)
      expect(await h().either(Engine.cancelRun(b, run.id, {}))).toMatchObject(notFound)
      expect(await h().either(Engine.signalRun(b, run.id, { action: "approve" }))).toMatchObject(notFound)
      const listB = await h().run(Engine.listRuns(b, { handler }))
      expect(listB.data).toEqual([])
      const listA = await h().run(Engine.listRuns(a, { handler }))
      expect(listA.data.map((r) => r.id)).toEqual([run.id])
      // Nothing B tried changed A's run.
      expect((await h().run(Engine.getRun(a, run.id))).status).toBe("queued")
    })

    it("answers a malformed or unknown run id exactly like another customer's", async () => {
      const a = newPrincipal()
      for (const id of ["", "run_", "../etc/passwd", "run_00000000000000000000000000", "x".repeat(5000)]) {
        const result = await h().either(Engine.getRun(a, id))
        expect(result).toMatchObject({
          _tag: "Left",
          left: { _tag: "RunNotFound", reason_code: "RUN_NOT_FOUND" }
        })
      }
    })

    it("keeps API keys apart: list, verify and revoke are per customer", async () => {
      const a = newPrincipal()
      const b = newPrincipal()
      const keyA = await h().run(Engine.issueKey(a, { scopes: ["runs:read"], name: "a" }))
      const keyB = await h().run(Engine.issueKey(b, { scopes: ["runs:read"], name: "b" }))
      expect((await h().run(Engine.listKeys(a))).map((k) => k.key_id)).toEqual([keyA.key_id])
      expect((await h().run(Engine.listKeys(b))).map((k) => k.key_id)).toEqual([keyB.key_id])
      expect(await h().either(Engine.revokeKey(b, keyA.key_id))).toMatchObject({
        _tag: "Left",
        left: { reason_code: "KEY_NOT_FOUND" }
      })
      expect(await h().run(Engine.verifyKey(keyA.key))).toMatchObject({
        customerId: a.customerId,
        scopes: ["runs:read"]
      })
    })

    it("keeps a worker of one customer's run from touching another run", async () => {
      const a = newPrincipal()
      const handler = newHandler()
      const mine = await runningRun(h(), a, handler)
      const theirs = await runningRun(h(), newPrincipal(), handler)
      const result = await h().either(
        Engine.applyCommand(
          theirs.id,
          RunState.RunCommand.Succeed({ leaseToken: mine.lease_token!, output: 1 }),
          {
            leaseToken: mine.lease_token
          }
        )
      )
      expect(result).toMatchObject({ _tag: "Left", left: { reason_code: "LEASE_LOST" } })
      await apply(
        h(),
        mine.id,
        RunState.RunCommand.Succeed({ leaseToken: mine.lease_token!, output: 1 }),
        mine.lease_token
      )
    })
  })
